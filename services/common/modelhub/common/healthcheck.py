"""`python -m modelhub.common.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC health check
answers SERVING (container and supervisor health probes). With MODELHUB_TLS_* set it calls
over mutual TLS, like the services do."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.common.settings import TlsSettings
from modelhub.common.tls import channel_credentials, channel_options


def check(
    address: str, service: str = "", timeout: float = 2.0, tls: TlsSettings | None = None
) -> bool:
    """SERVING? Over mutual TLS when `tls` (None: the MODELHUB_TLS_* settings) is on."""
    tls = TlsSettings() if tls is None else tls
    credentials = channel_credentials(tls)
    channel = (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(address, credentials, options=channel_options(tls))
    )
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m modelhub.common.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    return 0 if check(args[0], args[1] if len(args) > 1 else "") else 1


if __name__ == "__main__":
    sys.exit(main())
