"""Every domain exception maps to a deliberate gRPC status code, with rich details."""

from __future__ import annotations

import asyncio
import base64

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from modelhub.common import errors
from modelhub.common.status import (
    MAX_MESSAGE_BYTES,
    STATUS_DETAILS_KEY,
    STATUS_TABLE,
    bad_request,
    code_for_exception,
    domain_error,
    error_info,
    rich_status,
    status_code_for,
    to_grpc_status,
    to_rpc_status,
)


def _import_all_services() -> None:
    # Errors may be subclassed in any service package: import them all first.
    import importlib
    import pkgutil

    import modelhub

    for info in pkgutil.walk_packages(modelhub.__path__, "modelhub."):
        if ".api" in info.name or ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def test_every_domain_exception_has_a_mapping() -> None:
    _import_all_services()
    unmapped = [
        cls.__qualname__
        for cls in errors.all_error_classes()
        if cls is not errors.ModelHubError and status_code_for(cls) is None
    ]
    assert unmapped == []
    # The base class alone has no code: a new direct subclass must get a table entry.
    assert status_code_for(errors.ModelHubError) is None


def test_every_direct_subclass_of_the_base_is_in_the_table() -> None:
    _import_all_services()
    direct = errors.ModelHubError.__subclasses__()
    assert direct
    assert [cls.__name__ for cls in direct if cls not in STATUS_TABLE] == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgumentError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.DigestMismatchError("bad digest"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError("gone"), grpc.StatusCode.NOT_FOUND),
        (errors.InUseError("used"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ConflictError("stale"), grpc.StatusCode.ABORTED),
        (errors.RevisionCompactedError("old"), grpc.StatusCode.OUT_OF_RANGE),
        (errors.QueueFullError("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.DeadlineExpiredError("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ModelNotReadyError("loading"), grpc.StatusCode.UNAVAILABLE),
        (errors.UnauthenticatedError("who"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_codes(error: errors.ModelHubError, code: grpc.StatusCode) -> None:
    got, status = to_rpc_status(error)
    assert got == code
    assert status.code == code.value[0]
    assert status.message == error.message
    assert code_for_exception(error) == code


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFoundError("gone"), grpc.StatusCode.NOT_FOUND),
        (asyncio.CancelledError(), grpc.StatusCode.CANCELLED),
        (GeneratorExit(), grpc.StatusCode.CANCELLED),
        (ValueError("bug"), grpc.StatusCode.INTERNAL),
        (KeyboardInterrupt(), grpc.StatusCode.INTERNAL),
    ],
)
def test_the_code_a_call_ends_with_for_any_exception(
    exc: BaseException, code: grpc.StatusCode
) -> None:
    assert code_for_exception(exc) == code


def test_details_carry_reason_and_field_violations() -> None:
    error = errors.InvalidArgumentError(
        "model id 'Fraud' is not valid", field="model_id", metadata={"value": "Fraud"}
    )
    _, status = to_rpc_status(error)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "INVALID_ARGUMENT"
    assert info.metadata["value"] == "Fraud"
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["model_id"]


def _trailer_bytes(status: status_pb2.Status) -> int:
    """What grpc-message (percent-encoded) and grpc-status-details-bin (base64) weigh."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != ord("%") else 3 for b in status.message.encode())
    return message + len(base64.b64encode(status.SerializeToString()))


def test_a_status_echoing_huge_input_fits_in_a_clients_trailers() -> None:
    # gRPC clients refuse trailers past 8 KiB (RESOURCE_EXHAUSTED, the error lost).
    huge = "é" * 10_000
    error = errors.InvalidArgumentError(
        f"value {huge!r} is not valid",
        violations=[errors.FieldViolation(f"parameters[{huge}]", huge) for _ in range(10)],
        metadata={f"key{i}": huge for i in range(4)},
    )
    _, status = to_rpc_status(error)
    assert _trailer_bytes(status) < 8192 - 512
    assert status.message.startswith("value 'éé") and status.message.endswith("…")
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
    # Short messages are kept as they are.
    assert to_rpc_status(errors.NotFoundError("model 'é' not found"))[1].message == (
        "model 'é' not found"
    )


class _FailedCall:
    """What a client sees of a failed call: code, message and trailers."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        self._code, self._details, self._trailers = code, details, tuple(trailing_metadata)

    @classmethod
    def of(cls, status: grpc.Status) -> _FailedCall:
        return cls(status.code, status.details, status.trailing_metadata)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


def test_details_round_trip_through_grpc_status() -> None:
    error = errors.InvalidArgumentError(
        "input 'x' has shape [1, 4]", field="inputs[0].shape", reason="SHAPE_MISMATCH"
    )
    status = to_grpc_status(error)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == error.message
    [(key, _)] = status.trailing_metadata
    assert key == STATUS_DETAILS_KEY
    call = _FailedCall.of(status)
    info = error_info(call)
    assert info is not None and (info.reason, info.domain) == ("SHAPE_MISMATCH", "modelhub.dev")
    bad = bad_request(call)
    assert bad is not None and [v.field for v in bad.field_violations] == ["inputs[0].shape"]
    # The serialized trailer alone reads the same.
    assert error_info(dict(status.trailing_metadata)[STATUS_DETAILS_KEY]) == info
    # No BadRequest where there are no violations; nothing where there are no details.
    assert bad_request(_FailedCall.of(to_grpc_status(errors.NotFoundError("gone")))) is None
    bare = _FailedCall(grpc.StatusCode.NOT_FOUND, "gone")
    assert rich_status(bare) is None and error_info(bare) is None


def test_details_of_another_status_or_garbage_are_ignored() -> None:
    status = to_grpc_status(errors.NotFoundError("model 'm' not found"))
    # A proxy that rewrote the message but passed the old details on.
    rewritten = _FailedCall(status.code, "something else", status.trailing_metadata)
    assert rich_status(rewritten) is None
    garbage = _FailedCall(status.code, status.details, ((STATUS_DETAILS_KEY, b"\xff\x00"),))
    assert error_info(garbage) is None
    assert error_info(b"\xff\x00") is None


def test_domain_error_keeps_code_reason_and_metadata() -> None:
    error = errors.ResourceExhaustedError(
        "the store is full", reason="STORAGE_FULL", metadata={"errno": "ENOSPC"}
    )
    call = _FailedCall.of(to_grpc_status(error))
    mapped = domain_error(call, "uploading")  # type: ignore[arg-type]
    assert isinstance(mapped, errors.ResourceExhaustedError)
    assert mapped.message == "uploading: the store is full"
    assert (mapped.reason, mapped.metadata) == ("STORAGE_FULL", {"errno": "ENOSPC"})
