"""One typed exception for every failed call, keeping the status code and reason."""

from __future__ import annotations

import grpc

from modelhub.common.status import error_info


class ClientError(Exception):
    """A ModelHub RPC failed: `code` is the gRPC status, `reason` the ErrorInfo reason."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> ClientError:
        info = error_info(error)
        return cls(error.code(), error.details() or "", info.reason if info else "")
