"""The one place where domain exceptions become gRPC status codes, and back.

Every `ModelHubError` subclass resolves, through its MRO, to an entry of `STATUS_TABLE`.
The status carries `google.rpc.Status` details: an `ErrorInfo` with the error's reason and
metadata, and a `BadRequest` listing field violations for invalid arguments. The status
travels in the `grpc-status-details-bin` trailer through `grpc_status.rpc_status`
(`to_status` on the server, `from_call` on the client): use `abort` to fail an RPC with a
domain error, and `rich_status` / `error_info` / `bad_request` / `domain_error` to read a
failed call's.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from modelhub.common import errors

M = TypeVar("M", bound=Message)

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
        code = STATUS_TABLE.get(cls)
        if code is not None:
            return code
    return None


_CODES: dict[type[errors.ModelHubError], grpc.StatusCode] = {}


def code_of(error: errors.ModelHubError) -> grpc.StatusCode:
    """The status code `error` is reported with (INTERNAL for an unmapped class)."""
    cls = type(error)
    code = _CODES.get(cls)
    if code is None:
        # Error classes are few; hot paths (each failed request) ask again.
        code = _CODES[cls] = status_code_for(cls) or grpc.StatusCode.INTERNAL
    return code


def code_for_exception(exc: BaseException) -> grpc.StatusCode:
    """The status code a call that raised `exc` ends with: a domain error's own, CANCELLED
    for a cancelled call (`asyncio.CancelledError`, or `GeneratorExit` for a stream the
    client left) and INTERNAL for any other exception."""
    if isinstance(exc, errors.ModelHubError):
        return code_of(exc)
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL


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


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_rpc_status(error: errors.ModelHubError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and the rich `google.rpc.Status` for a domain error (messages, field
    violations and metadata values bounded: see MAX_MESSAGE_BYTES)."""
    code = code_of(error)
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
        violations = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=bounded(v.field, MAX_FIELD_BYTES),
                    description=bounded(v.description, MAX_DESCRIPTION_BYTES),
                )
                for v in error.violations[:MAX_VIOLATIONS]
            ]
        )
        status.details.append(_pack(violations))
    return code, status


def to_grpc_status(error: errors.ModelHubError) -> grpc.Status:
    """The `grpc.Status` (code, message, details trailer) that reports `error`."""
    return rpc_status.to_status(to_rpc_status(error)[1])


async def abort(context: grpc.aio.ServicerContext, error: errors.ModelHubError) -> NoReturn:
    """Fail the RPC of `context` with `error`'s status and details."""
    status = to_grpc_status(error)
    # `abort`, not `abort_with_status`: the OpenTelemetry servicer context records the
    # span's status only in the former (the latter bypasses its wrapper).
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


# The trailer the rich status travels in (grpc_status's key; tests read it raw).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def rich_status(
    source: grpc.Call | grpc.aio.AioRpcError | bytes | None,
) -> status_pb2.Status | None:
    """The `google.rpc.Status` of a failed call (or of a serialized details trailer); None
    when it carries none, or one that does not parse or disagrees with the call's code and
    message."""
    if source is None:
        return None
    try:
        if isinstance(source, bytes):
            return status_pb2.Status.FromString(source)
        status: status_pb2.Status | None = rpc_status.from_call(source)
    except (DecodeError, ValueError):  # malformed, or disagrees with the call's status
        return None
    return status


def detail(status: status_pb2.Status | None, kind: type[M]) -> M | None:
    """The first detail of type `kind` in `status`, unpacked."""
    for packed in status.details if status is not None else ():
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            return message
    return None


def error_info(
    source: grpc.Call | grpc.aio.AioRpcError | bytes | None,
) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a failed call (or of a serialized `grpc-status-details-bin`)."""
    return detail(rich_status(source), error_details_pb2.ErrorInfo)


def bad_request(
    source: grpc.Call | grpc.aio.AioRpcError | bytes | None,
) -> error_details_pb2.BadRequest | None:
    """The BadRequest (field violations) of a failed call, when it has one."""
    return detail(rich_status(source), error_details_pb2.BadRequest)


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
    info = error_info(exc)
    reason = (info.reason or None) if info is not None else None
    metadata = dict(info.metadata) if info is not None else None
    cls = _BY_CODE.get(code)
    message = f"{what}: {exc.details() or code.name}"
    if cls is None:  # UNKNOWN, INTERNAL, UNIMPLEMENTED, DATA_LOSS
        return errors.UnavailableError(
            f"{what}: answered {code.name}: {exc.details() or ''}".rstrip(": "),
            reason=reason or "UPSTREAM_FAILED",
            metadata=metadata,
        )
    return cls(message, reason=reason, metadata=metadata)
