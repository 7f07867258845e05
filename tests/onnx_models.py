"""Tiny deterministic ONNX models for tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def add_constant(value: float = 1.0, features: int = 4, name: str = "add") -> bytes:
    """y = x + value for x: float32 [batch, features] (the value tells versions apart)."""
    const = numpy_helper.from_array(np.full((features,), value, dtype=np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        [const],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelhub-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def two_inputs() -> bytes:
    """z = a * b (int64 [n, 2]), plus the argmax of a float input: exercises several dtypes."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["a", "b"], ["z"]),
            helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
        ],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("scores", TensorProto.DOUBLE, ["n", 3]),
        ],
        [
            helper.make_tensor_value_info("z", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
