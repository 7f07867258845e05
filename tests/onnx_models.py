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


def _ml_model(graph: onnx.GraphProto, opset: int = 17, ir_version: int = 8) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="modelhub-tests",
    )
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def string_identity(width: int = 2) -> bytes:
    """y = x for x: string [batch, width] (BYTES in and out, batchable)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "string_identity",
        [helper.make_tensor_value_info("x", TensorProto.STRING, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, ["batch", width])],
    )
    return _ml_model(graph)


def string_to_id(labels: tuple[str, ...] = ("cat", "dog", "émeu")) -> bytes:
    """ai.onnx.ml LabelEncoder: y[i] = index of x[i] in `labels`, -1 if absent, for x:
    string [batch] → int64 [batch] (BYTES in, numbers out)."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "LabelEncoder",
                ["x"],
                ["y"],
                domain="ai.onnx.ml",
                keys_strings=list(labels),
                values_int64s=list(range(len(labels))),
                default_int64=-1,
            )
        ],
        "string_to_id",
        [helper.make_tensor_value_info("x", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch"])],
    )
    return _ml_model(graph)


def id_to_string(labels: tuple[str, ...] = ("cat", "dog", "émeu"), default: str = "?") -> bytes:
    """ai.onnx.ml LabelEncoder: y[i] = labels[x[i]] (`default` out of range), for x:
    int64 [batch] → string [batch] (numbers in, BYTES out)."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "LabelEncoder",
                ["x"],
                ["y"],
                domain="ai.onnx.ml",
                keys_int64s=list(range(len(labels))),
                values_strings=list(labels),
                default_string=default,
            )
        ],
        "id_to_string",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, ["batch"])],
    )
    return _ml_model(graph)


def sequence_output() -> bytes:
    """x: float32 [batch, 2] → y: seq(tensor(float)) (SequenceConstruct): an output no
    inference protocol tensor can carry."""
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["y"])],
        "sequence_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None)],
    )
    return _ml_model(graph)


def cast_output(elem_type: int) -> bytes:
    """x: float32 [batch, 2] → Cast to ONNX element type `elem_type` (e.g. BFLOAT16,
    FLOAT8E4M3FN, INT4: types without a servable datatype)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=elem_type)],
        "cast_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", elem_type, ["batch", 2])],
    )
    return _ml_model(graph, opset=21, ir_version=10)
