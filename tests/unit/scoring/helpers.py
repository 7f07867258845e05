"""Models and data files for the batch scoring tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

FEATURES = 16
OUTPUTS = 4


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def small_mlp(features: int = FEATURES, seed: int = 7) -> bytes:
    """float32 [batch, features] → Gemm 32 → Relu → Gemm 4 (seeded weights)."""
    rng = np.random.default_rng(seed)
    w0 = numpy_helper.from_array(rng.standard_normal((features, 32)).astype(np.float32), "w0")
    b0 = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b0")
    w1 = numpy_helper.from_array(rng.standard_normal((32, OUTPUTS)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(OUTPUTS).astype(np.float32), "b1")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w0", "b0"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w1", "b1"], ["y"]),
        ],
        "small_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUTPUTS])],
        [w0, b0, w1, b1],
    )
    return _model(graph)


def lookup(size: int = 5) -> bytes:
    """y = table[i] for i: int64 [batch] (ONNX Runtime refuses an index out of range at
    run time: the rows a batch split must find)."""
    table = numpy_helper.from_array(np.arange(size, dtype=np.float32) * 10, "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "i"], ["y"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("i", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        [table],
    )
    return _model(graph)


def reference(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """In-process ONNX Runtime on all rows at once (the scoring job batches differently)."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def features(rows: int, seed: int = 3, features: int = FEATURES) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, features)).astype(np.float32)


def list_column(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def write_parquet_with_bad_rows(
    path: Path, x: np.ndarray, row_group_size: int = 10_000
) -> dict[int, str]:
    """`x` as a fixed-size list column `x` (with a `txn` id column), some rows spoiled:
    a null row, a null value inside a row. Returns {position: reason fragment}."""
    rows = len(x)
    bad = {7: "is null", rows // 2: "is null", rows - 3: "value 5 is null"}
    mask = np.zeros(x.size, bool)
    mask[(rows - 3) * x.shape[1] + 5] = True  # one null value in row rows-3
    values = pa.array(x.reshape(-1), mask=mask)
    row_null = np.zeros(rows, bool)
    row_null[[7, rows // 2]] = True
    column = pa.FixedSizeListArray.from_arrays(values, x.shape[1], mask=pa.array(row_null))
    ids = pa.array([f"t{i:06d}" for i in range(rows)])
    pq.write_table(pa.table({"txn": ids, "x": column}), path, row_group_size=row_group_size)
    return bad


def read_outputs(path: Path, name: str = "y", width: int = OUTPUTS) -> np.ndarray:
    column = pq.read_table(path).column(name).combine_chunks()
    return np.asarray(column.flatten().to_numpy()).reshape(len(column), width)
