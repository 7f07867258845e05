"""gRPC credentials for mutual TLS between the services (MODELHUB_TLS_*, `TlsSettings`):
one place that turns the settings into server and channel credentials."""

from __future__ import annotations

from typing import Any

import grpc

from modelhub.common.settings import TlsSettings


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """Server credentials (None when TLS is off): the process's certificate, and a client
    certificate signed by the suite's CA required of every caller (Envoy and the other
    services)."""
    if not tls.enabled:
        return None
    return grpc.ssl_server_credentials(
        [(_read(tls.key_file), _read(tls.cert_file))],
        root_certificates=_read(tls.ca_file),
        require_client_auth=True,
    )


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials | None:
    """Client credentials (None when TLS is off): the suite's CA verifies the server, the
    process's certificate identifies it as a client."""
    if not tls.enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )


def channel_options(tls: TlsSettings) -> list[tuple[str, Any]]:
    """Channel options for `tls.server_name`: the name verified in the server's certificate
    instead of the dialled host."""
    if tls.enabled and tls.server_name:
        return [("grpc.ssl_target_name_override", tls.server_name)]
    return []
