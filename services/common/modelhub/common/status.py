"""The one place where domain exceptions become gRPC status codes.

Every `ModelHubError` subclass resolves, through its MRO, to an entry of `STATUS_TABLE`.
The status carries `google.rpc.Status` details: an `ErrorInfo` with the error's reason and
metadata, and a `BadRequest` listing field violations for invalid arguments.
"""

from __future__ import annotations

import contextlib

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from modelhub.common import errors

ERROR_DOMAIN = "modelhub.dev"

STATUS_TABLE: dict[type[errors.ModelHubError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidArtifactError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.DigestMismatchError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InUseError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.SchemaOutdatedError: grpc.StatusCode.FAILED_PRECONDITION,
    # AIP-154: a stale etag fails with ABORTED (retry after re-reading).
    errors.ConflictError: grpc.StatusCode.ABORTED,
    # etcd answers a compacted watch revision with OUT_OF_RANGE too.
    errors.RevisionCompactedError: grpc.StatusCode.OUT_OF_RANGE,
    errors.ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.QueueFullError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.PayloadTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExpiredError: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
    errors.ModelNotReadyError: grpc.StatusCode.UNAVAILABLE,
    errors.UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    errors.CancelledError: grpc.StatusCode.CANCELLED,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


def status_code_for(error_class: type[errors.ModelHubError]) -> grpc.StatusCode | None:
    """The status code of an error class: its own entry or its nearest mapped ancestor's."""
    for cls in error_class.__mro__:
        code = STATUS_TABLE.get(cls)  # type: ignore[call-overload]
        if code is not None:
            return code
    return None


# A status travels in the answer's trailers, which gRPC clients refuse past 8 KiB by default
# (the call then fails with RESOURCE_EXHAUSTED "Stream removed", the error lost):
# `grpc-message` percent-encodes every non-ASCII byte (x3) and `grpc-status-details-bin` is
# base64 (x4/3). Messages that echo a client's input are cut here, whatever they echo, so
# that the worst case stays near 7 KiB.
MAX_MESSAGE_BYTES = 768
MAX_VIOLATIONS = 4
MAX_DESCRIPTION_BYTES = 384
MAX_FIELD_BYTES = 128
MAX_METADATA_VALUE_BYTES = 128


def bounded(text: str, limit: int) -> str:
    """`text`, or its first characters and "…" in at most `limit` UTF-8 bytes."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "…"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_rpc_status(error: errors.ModelHubError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and the rich `google.rpc.Status` for a domain error (messages, field
    violations and metadata values bounded: see MAX_MESSAGE_BYTES)."""
    code = status_code_for(type(error)) or grpc.StatusCode.INTERNAL
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=bounded(error.message, MAX_MESSAGE_BYTES)
    )
    info = error_details_pb2.ErrorInfo(
        reason=error.reason,
        domain=ERROR_DOMAIN,
        metadata={
            key: bounded(value, MAX_METADATA_VALUE_BYTES) for key, value in error.metadata.items()
        },
    )
    status.details.append(_pack(info))
    if isinstance(error, errors.InvalidArgumentError) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=bounded(v.field, MAX_FIELD_BYTES),
                    description=bounded(v.description, MAX_DESCRIPTION_BYTES),
                )
                for v in error.violations[:MAX_VIOLATIONS]
            ]
        )
        status.details.append(_pack(bad_request))
    return code, status


STATUS_DETAILS_KEY = "grpc-status-details-bin"


def error_info(status_details: bytes) -> error_details_pb2.ErrorInfo | None:
    """Extract the ErrorInfo from serialized `grpc-status-details-bin` trailing metadata."""
    status = status_pb2.Status.FromString(status_details)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


# The most general domain error of each status code (the inverse of STATUS_TABLE), for
# failed calls to another ModelHub service.
_BY_CODE: dict[grpc.StatusCode, type[errors.ModelHubError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPreconditionError,
    grpc.StatusCode.ABORTED: errors.ConflictError,
    grpc.StatusCode.OUT_OF_RANGE: errors.RevisionCompactedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExpiredError,
    grpc.StatusCode.UNAVAILABLE: errors.UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: errors.UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
    grpc.StatusCode.CANCELLED: errors.CancelledError,
}


def domain_error(exc: grpc.aio.AioRpcError, what: str) -> errors.ModelHubError:
    """The domain error for a failed call to another service, `what` naming the call: the
    same status code, and the service's reason and metadata when it sent them."""
    code = exc.code()
    reason, metadata = None, None
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            with contextlib.suppress(Exception):
                info = error_info(value)
                if info is not None:
                    reason, metadata = info.reason or None, dict(info.metadata)
    cls = _BY_CODE.get(code)
    message = f"{what}: {exc.details() or code.name}"
    if cls is None:  # UNKNOWN, INTERNAL, UNIMPLEMENTED, DATA_LOSS
        return errors.UnavailableError(
            f"{what}: answered {code.name}: {exc.details() or ''}".rstrip(": "),
            reason=reason or "UPSTREAM_FAILED",
            metadata=metadata,
        )
    return cls(message, reason=reason, metadata=metadata)
