"""Validation of uploaded ONNX artifacts and extraction of their input/output schema (read
with the suite's one reader, `modelhub.common.onnx_schema`)."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from modelhub.common.contract import ModelSchema
from modelhub.common.errors import InvalidArtifactError
from modelhub.common.onnx_schema import first_line, not_onnx, schema_of


def inspect_onnx(path: Path) -> ModelSchema:
    """Check an ONNX file with `onnx.checker` and read its schema (blocking: use a thread).

    Raises InvalidArtifactError with a message a person can act on.
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise not_onnx(exc) from None
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise InvalidArtifactError(
            f"the ONNX checker rejected the model: {first_line(str(exc))}"
        ) from None
    return schema_of(model)
