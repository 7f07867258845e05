"""One typed exception for every failed call, keeping the status code and reason."""

from __future__ import annotations

import grpc

from modelhub.common.status import STATUS_DETAILS_KEY, error_info


class ClientError(Exception):
    """A ModelHub RPC failed: `code` is the gRPC status, `reason` the ErrorInfo reason."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> ClientError:
        reason = ""
        for key, value in error.trailing_metadata() or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                info = error_info(value)
                reason = info.reason if info else ""
        return cls(error.code(), error.details() or "", reason)
