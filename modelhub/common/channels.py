"""Client channels between ModelHub services: one way to open them and to authenticate."""

from __future__ import annotations

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from modelhub.common.server import channel_options

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str | None) -> Metadata:
    """Call metadata carrying `token` (empty when there is none)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def service_channel(address: str, max_message_bytes: int = 64 << 20) -> grpc.aio.Channel:
    """An instrumented channel to another ModelHub service (control-plane calls: the trace
    context travels with every call). Create it inside the running event loop."""
    return grpc.aio.insecure_channel(
        address,
        options=channel_options(max_message_bytes),
        interceptors=aio_client_interceptors(),
    )
