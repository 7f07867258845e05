"""Columns ↔ tensors: which columns feed which input, the file-level refusals, and the
per-row checks that send a row to the errors file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.inference.spec import ModelSchema, TensorSpec
from modelhub.scoring.columns import (
    ARRAY_COLUMN,
    ELEMENTS,
    SCALAR,
    WHOLE,
    ColumnPlan,
    build_plan,
)

SCHEMA = ModelSchema(
    (TensorSpec("x", "FP32", (-1, 3)),),
    (TensorSpec("y", "FP32", (-1, 2)),),
)


def _plan(
    columns: dict[str, pa.DataType], schema: ModelSchema = SCHEMA, **kw: object
) -> ColumnPlan:
    return build_plan(schema, columns, model="m", **kw)  # type: ignore[arg-type]


def _extract(plan: ColumnPlan, table: pa.Table) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    out = plan.extract(table, np.arange(100, 100 + table.num_rows))
    reasons = dict(zip(out.error_positions.tolist(), out.reasons, strict=True))
    assert sorted(out.positions.tolist() + list(reasons)) == list(range(100, 100 + table.num_rows))
    return out.feeds, reasons


# ---------------------------------------------------------------------------------- plan


def test_a_column_named_like_the_input_carries_the_whole_row() -> None:
    plan = _plan({"x": pa.list_(pa.float64(), 3), "other": pa.string()})
    (tensor,) = plan.inputs
    assert (tensor.kind, tensor.columns) == (WHOLE, ("x",))
    assert plan.read_columns() == ["x"]


def test_one_column_per_feature_named_input_index() -> None:
    plan = _plan({"x[0]": pa.float32(), "x[1]": pa.int64(), "x[2]": pa.string()})
    assert plan.inputs[0].kind == ELEMENTS
    assert plan.inputs[0].columns == ("x[0]", "x[1]", "x[2]")


def test_explicit_columns_win_and_keep_their_order() -> None:
    columns = {"x": pa.list_(pa.float32(), 3), "c": pa.float32(), "a": pa.float32(), "b": pa.int8()}
    plan = _plan(columns, mapping={"x": ("c", "a", "b")})
    assert plan.inputs[0].columns == ("c", "a", "b")


def test_data_profile_feature_names_feed_a_single_input() -> None:
    columns = {"amount": pa.float64(), "age": pa.int32(), "score": pa.float32(), "id": pa.int64()}
    plan = _plan(columns, feature_names=("amount", "age", "score"), id_column="id")
    assert plan.inputs[0].columns == ("amount", "age", "score")
    assert plan.output_schema(pa.int64()).names == ["id", "y"]


def test_a_plain_npy_array_feeds_the_only_input() -> None:
    plan = _plan({ARRAY_COLUMN: pa.list_(pa.float32(), 3)}, array_column=True)
    assert plan.inputs[0].columns == (ARRAY_COLUMN,)


def test_a_missing_input_names_what_would_feed_it() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _plan({"a": pa.float32(), "b": pa.float32()})
    message = caught.value.message
    assert "no columns for input 'x' (FP32, 3 values per row)" in message
    assert "'x[0]' … 'x[2]'" in message
    assert "--columns x=" in message
    assert "'a', 'b'" in message


def test_some_feature_columns_missing_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match=r"missing 'x\[2\]'"):
        _plan({"x[0]": pa.float32(), "x[1]": pa.float32()})


@pytest.mark.parametrize(
    ("columns", "mapping", "fragment"),
    [
        ({"x": pa.list_(pa.float32(), 4)}, {}, "holds 4 values per row (4); input 'x' takes 3"),
        ({"x": pa.float32()}, {}, "holds one float per row; input 'x' takes 3"),
        ({"x": pa.list_(pa.list_(pa.float32()))}, {}, "list of lists of varying size"),
        ({"x": pa.list_(pa.timestamp("s"), 3)}, {}, "holds timestamp[s]"),
        ({"a": pa.float32(), "b": pa.float32()}, {"x": ("a", "b")}, "gives 2 columns"),
        ({"a": pa.float32()}, {"x": ("a", "zz")}, "names 'zz', not in the file"),
        ({"a": pa.float32()}, {"nope": ("a",)}, "'nope', not input(s) of model m"),
        (
            {"a": pa.list_(pa.float32(), 1), "b": pa.float32(), "c": pa.float32()},
            {"x": ("a", "b", "c")},
            "column 'a' is a list",
        ),
    ],
)
def test_file_level_problems_refuse_the_job(
    columns: dict[str, pa.DataType], mapping: dict[str, tuple[str, ...]], fragment: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _plan(columns, mapping=mapping)
    assert fragment in caught.value.message


def test_text_inputs_take_only_text_columns() -> None:
    schema = ModelSchema((TensorSpec("s", "BYTES", (-1,)),), (TensorSpec("n", "INT64", (-1,)),))
    assert _plan({"s": pa.string()}, schema).inputs[0].kind == SCALAR
    with pytest.raises(InvalidArgumentError, match=r"takes text"):
        _plan({"s": pa.int64()}, schema)


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (ModelSchema((TensorSpec("x", "FP32", (-1, -1)),), ()), "DYNAMIC_ROW_SHAPE"),
        (ModelSchema((TensorSpec("x", "FP32", (4, 3)),), ()), "NOT_BATCHABLE"),
        (ModelSchema((TensorSpec("x", "BF16", (-1, 3)),), ()), "UNSUPPORTED_DATATYPE"),
        (
            ModelSchema((TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("s", "FP32", (2,)),)),
            "NOT_BATCHABLE",
        ),
    ],
)
def test_models_that_cannot_be_batch_scored_are_refused(schema: ModelSchema, reason: str) -> None:
    with pytest.raises(FailedPreconditionError) as caught:
        _plan({"x": pa.list_(pa.float32(), 3)}, schema)
    assert caught.value.reason == reason


def test_a_model_with_a_batch_of_one_runs_row_by_row() -> None:
    schema = ModelSchema((TensorSpec("x", "FP32", (1, 3)),), (TensorSpec("y", "FP32", (1, 2)),))
    assert _plan({"x": pa.list_(pa.float32(), 3)}, schema).max_batch == 1


def test_an_output_named_like_the_row_id_is_refused() -> None:
    schema = ModelSchema(
        (TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("row_id", "FP32", (-1,)),)
    )
    with pytest.raises(InvalidArgumentError, match="--id-column"):
        _plan({"x": pa.list_(pa.float32(), 3)}, schema)


def test_output_columns_keep_the_tensor_shape() -> None:
    schema = ModelSchema(
        (TensorSpec("x", "FP32", (-1, 3)),),
        (
            TensorSpec("p", "FP32", (-1, 2, 3)),
            TensorSpec("label", "INT64", (-1,)),
            TensorSpec("tokens", "BYTES", (-1, -1)),
        ),
    )
    out = _plan({"x": pa.list_(pa.float32(), 3)}, schema).output_schema(None)
    assert out.field("row_id").type == pa.int64()
    assert out.field("p").type == pa.list_(pa.list_(pa.float32(), 3), 2)
    assert out.field("label").type == pa.int64()
    assert out.field("tokens").type == pa.list_(pa.string())


# --------------------------------------------------------------------------------- rows


def test_a_clean_block_is_converted_without_errors() -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 3)})
    feeds, reasons = _extract(_plan({"x": table.schema.field("x").type}), table)
    assert reasons == {}
    assert feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["x"], x.astype(np.float32))


def test_null_rows_and_null_values_go_to_errors_with_their_reason() -> None:
    values = pa.array([1.0, 2, 3, 4, None, 6, 7, 8, 9, 10, 11, 12], pa.float32())
    column = pa.FixedSizeListArray.from_arrays(
        values, 3, mask=pa.array([False, False, True, False])
    )
    table = pa.table({"x": column})
    feeds, reasons = _extract(_plan({"x": column.type}), table)
    assert reasons == {101: "column 'x' value 1 is null", 102: "column 'x' is null"}
    np.testing.assert_array_equal(feeds["x"], [[1, 2, 3], [10, 11, 12]])


def test_variable_lists_of_the_wrong_length_are_errors() -> None:
    column = pa.array([[1, 2, 3], [1, 2], None, [4, 5, 6], [1, 2, 3, 4]], pa.list_(pa.int64()))
    feeds, reasons = _extract(_plan({"x": column.type}), pa.table({"x": column}))
    assert reasons == {
        101: "column 'x' has 2 values; input 'x' takes 3",
        102: "column 'x' is null",
        104: "column 'x' has 4 values; input 'x' takes 3",
    }
    np.testing.assert_array_equal(feeds["x"], [[1, 2, 3], [4, 5, 6]])


def test_text_columns_are_parsed_and_bad_values_reported() -> None:
    table = pa.table(
        {
            "x[0]": ["1.5", " 2 ", "abc", "4", None],
            "x[1]": ["1e3", "-inf", "3", "", "5"],
            "x[2]": ["0", "0", "0", "0", "0"],
        }
    )
    plan = _plan({name: pa.string() for name in table.column_names})
    feeds, reasons = _extract(plan, table)
    assert reasons == {
        102: "column 'x[0]' is 'abc': not a number",
        103: "column 'x[1]' is '': not a number",
        104: "column 'x[0]' is null",
    }
    np.testing.assert_array_equal(feeds["x"], [[1.5, 1000, 0], [2, -np.inf, 0]])


@pytest.mark.parametrize(
    ("datatype", "values", "bad"),
    [
        ("INT8", pa.array([1, 127, 128, -129], pa.int64()), {102: "128", 103: "-129"}),
        ("INT64", pa.array([1.0, 2.5, float("nan"), 4.0]), {101: "2.5", 102: "nan"}),
        ("UINT8", pa.array(["7", "-1", "x", "255"]), {101: "'-1'", 102: "'x'"}),
        ("BOOL", pa.array([0, 1, 2, 1], pa.int32()), {102: "2"}),
        ("BOOL", pa.array(["true", "False", "yes", "0"]), {102: "'yes'"}),
    ],
)
def test_values_out_of_the_tensors_type_are_errors(
    datatype: str, values: pa.Array, bad: dict[int, str]
) -> None:
    schema = ModelSchema((TensorSpec("v", datatype, (-1,)),), (TensorSpec("y", "FP32", (-1,)),))
    feeds, reasons = _extract(_plan({"v": values.type}, schema), pa.table({"v": values}))
    assert set(reasons) == set(bad)
    for position, shown in bad.items():
        assert f"column 'v' is {shown}: not " in reasons[position]
    assert feeds["v"].dtype == np.dtype(
        {"INT8": "i1", "INT64": "i8", "UINT8": "u1", "BOOL": "?"}[datatype]
    )
    assert len(feeds["v"]) == len(values) - len(bad)


def test_several_inputs_and_an_id_column() -> None:
    schema = ModelSchema(
        (TensorSpec("a", "INT64", (-1, 2)), TensorSpec("s", "BYTES", (-1,))),
        (TensorSpec("z", "INT64", (-1, 2)),),
    )
    table = pa.table(
        {
            "a": pa.array([[1, 2], [3, 4], [5, 6]], pa.list_(pa.int32(), 2)),
            "s": ["p", None, "r"],
            "key": ["k0", "k1", "k2"],
        }
    )
    plan = _plan({f.name: f.type for f in table.schema}, schema, id_column="key")
    extracted = plan.extract(table, np.arange(3))
    assert extracted.reasons == ["column 's' is null"]
    assert extracted.ids is not None and extracted.ids.to_pylist() == ["k0", "k2"]
    assert extracted.error_ids is not None and extracted.error_ids.to_pylist() == ["k1"]
    assert extracted.feeds["s"].tolist() == ["p", "r"]
    assert extracted.feeds["a"].dtype == np.int64
