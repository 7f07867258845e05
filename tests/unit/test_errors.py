"""Every domain exception maps to a deliberate gRPC status code, with rich details."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from modelhub.common import errors
from modelhub.common.status import (
    MAX_MESSAGE_BYTES,
    STATUS_TABLE,
    status_code_for,
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
