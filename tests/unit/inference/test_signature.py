"""Checks a request's tensors against a version's signature."""

from __future__ import annotations

import numpy as np
import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.inference.request import InputTensor
from modelhub.inference.signature import ModelSignature
from modelhub.inference.spec import ModelSchema, TensorSpec

SCHEMA = ModelSchema(
    inputs=(TensorSpec("x", "FP32", (-1, 3)), TensorSpec("z", "INT64", (-1, 2))),
    outputs=(TensorSpec("sum", "FP32", (-1, 1)), TensorSpec("twice", "INT64", (-1, 2))),
)


def _x(rows: int, width: int = 3, dtype: str = "FP32") -> InputTensor:
    array = np.zeros((rows, width), np.float32 if dtype == "FP32" else np.int64)
    return InputTensor("x", dtype, array.shape, array)


def _z(rows: int) -> InputTensor:
    array = np.zeros((rows, 2), np.int64)
    return InputTensor("z", "INT64", array.shape, array)


def _violation(tensors: list[InputTensor], max_batch: int = 8) -> tuple[str, str]:
    with pytest.raises(InvalidArgumentError) as err:
        ModelSignature(SCHEMA, max_batch).prepare(tensors)
    return err.value.message, err.value.violations[0].field


def test_orders_inputs_for_the_session_and_reports_rows() -> None:
    signature = ModelSignature(SCHEMA, 8)
    arrays, rows, key = signature.prepare([_z(3), _x(3)])  # any order on the wire
    assert [a.dtype for a in arrays] == [np.float32, np.int64]
    assert rows == 3
    assert key == ((3,), (2,))
    assert signature.batchable


def test_violations_name_the_field() -> None:
    assert _violation([_x(2), InputTensor("w", "FP32", (2, 2), np.zeros((2, 2)))])[1] == (
        "inputs[1].name"
    )
    message, field = _violation([_x(2)])
    assert "missing input(s) 'z'" in message
    assert field == "inputs"
    assert _violation([_x(2, dtype="INT64"), _z(2)])[1] == "inputs[0].datatype"
    assert _violation([_x(2, width=4), _z(2)])[1] == "inputs[0].shape"
    assert "appears more than once" in _violation([_x(2), _x(2)])[0]
    assert "disagree on the number of rows" in _violation([_x(2), _z(3)])[0]
    assert "zero rows" in _violation([_x(0), _z(0)])[0]
    message, field = _violation([_x(9), _z(9)], max_batch=8)
    assert "at most 8" in message
    assert field == "inputs[0].shape"


def test_rank_must_match() -> None:
    flat = InputTensor("x", "FP32", (6,), np.zeros(6, np.float32))
    assert _violation([flat, _z(2)])[1] == "inputs[0].shape"


def test_fixed_first_dimension_is_not_batchable() -> None:
    schema = ModelSchema((TensorSpec("x", "FP32", (2, 3)),), (TensorSpec("y", "FP32", (2, 3)),))
    signature = ModelSignature(schema, 64)
    assert not signature.batchable
    assert signature.max_rows == 1
    array = np.zeros((2, 3), np.float32)
    _, rows, key = signature.prepare([InputTensor("x", "FP32", (2, 3), array)])
    assert (rows, key) == (1, None)


def test_output_selection() -> None:
    signature = ModelSignature(SCHEMA, 8)
    assert signature.output_indices([]) == (0, 1)
    assert signature.output_indices(["twice"]) == (1,)
    with pytest.raises(InvalidArgumentError) as err:
        signature.output_indices(["sum", "nope"])
    assert err.value.violations[0].field == "outputs[1].name"
