"""Client channels between ModelHub services: one way to open them and to authenticate."""

from __future__ import annotations

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from modelhub.common.server import channel_options
from modelhub.common.settings import TlsSettings
from modelhub.common.tls import channel_credentials
from modelhub.common.tls import channel_options as tls_channel_options

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str | None) -> Metadata:
    """Call metadata carrying `token` (empty when there is none)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def service_channel(
    address: str, max_message_bytes: int = 64 << 20, tls: TlsSettings | None = None
) -> grpc.aio.Channel:
    """An instrumented channel to another ModelHub service (control-plane calls: the trace
    context travels with every call), over mutual TLS when `tls` is on (None: the suite's
    MODELHUB_TLS_* settings). Create it inside the running event loop."""
    tls = TlsSettings() if tls is None else tls
    credentials = channel_credentials(tls)
    options = channel_options(max_message_bytes) + tls_channel_options(tls)
    interceptors = aio_client_interceptors()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
