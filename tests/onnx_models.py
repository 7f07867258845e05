"""Tiny deterministic ONNX models for tests."""

from __future__ import annotations

from pathlib import Path

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


def large_matmul(path: Path, size_bytes: int, layers: int = 1) -> Path:
    """Write a chain of `layers` MatMuls (h = h @ w_i) to `path`, with square float32
    initializers w_i of about `size_bytes` in all (side n = sqrt(size_bytes / 4 / layers)):
    a model whose file is large while a row in or out stays small (n floats), for memory
    accounting. One layer: one large allocation; many: many middle-sized ones (which the
    C allocator keeps after they are freed unless trimmed). x: float32 [batch, n] → y:
    float32 [batch, n]. Seeded: the same bytes every time. Returns `path`."""
    side = max(1, int((size_bytes / 4 / max(1, layers)) ** 0.5))
    rng = np.random.default_rng(7)
    weights = [
        numpy_helper.from_array(rng.random((side, side), dtype=np.float32) / side, f"w{i}")
        for i in range(max(1, layers))
    ]
    names = ["x", *(f"h{i}" for i in range(len(weights) - 1)), "y"]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [names[i], w.name], [names[i + 1]])
            for i, w in enumerate(weights)
        ],
        "large_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", side])],
        weights,
    )
    del weights
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def small_cnn(seed: int = 5) -> bytes:
    """A small image classifier: float32 [batch, 3, 16, 16] → Conv 8 + Relu → Conv 16 +
    Relu → GlobalAveragePool → Flatten → Gemm 10 (`logits`), seeded weights."""
    rng = np.random.default_rng(seed)

    def weights(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        return numpy_helper.from_array(values.astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], transB=1),
    ]
    initializers = [
        weights("w1", 8, 3, 3, 3),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        weights("w2", 16, 8, 3, 3),
        numpy_helper.from_array(np.zeros(16, np.float32), "b2"),
        weights("w3", 10, 16),
        numpy_helper.from_array(np.zeros(10, np.float32), "b3"),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
