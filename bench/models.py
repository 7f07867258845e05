"""Deterministic reference ONNX models for the benchmark, built with `onnx.helper`.

- `mlp`: float32 [-1, 256] → Gemm 1024 → Relu → Gemm 1024 → Relu → Gemm 16 (`version`
  2, 3 … : the same graph with other weights, for endpoints that split between versions)
- `identity`: float32 [-1, 16] → Identity
- `cnn_small`: float32 [-1, 3, 32, 32] → two Conv+Relu → GlobalAveragePool → Gemm 10

Weights come from a seeded generator, so every run (and every process) builds the same
bytes. `python bench/models.py DIR` writes `DIR/<name>.onnx`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ONNX Runtime 1.31 reads IR versions up to 13; pin one every supported runtime reads.
IR_VERSION = 9
OPSET = 17


@dataclass(frozen=True)
class ModelInfo:
    """A reference model: its bytes and the shape of one input row."""

    name: str
    onnx_bytes: bytes
    input_name: str
    row_shape: tuple[int, ...]
    output_name: str


def _weights(rng: np.random.Generator, shape: tuple[int, ...], name: str) -> TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
    scale = np.sqrt(2.0 / fan_in)
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="modelhub-bench",
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mlp(version: int = 1) -> ModelInfo:
    """Version 1 is the benchmark's reference; later versions differ only in weights."""
    rng = np.random.default_rng(256 if version == 1 else (256, version))
    dims = [256, 1024, 1024, 16]
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    prev = "x"
    for i in range(3):
        inits.append(_weights(rng, (dims[i], dims[i + 1]), f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(dims[i + 1], np.float32), f"b{i}"))
        last = i == 2
        out = "y" if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        inits,
    )
    return ModelInfo("mlp", _model(graph), "x", (256,), "y")


def identity() -> ModelInfo:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
    )
    return ModelInfo("identity", _model(graph), "x", (16,), "y")


def cnn_small() -> ModelInfo:
    rng = np.random.default_rng(32)
    inits = [
        _weights(rng, (16, 3, 3, 3), "c1w"),
        numpy_helper.from_array(np.zeros(16, np.float32), "c1b"),
        _weights(rng, (32, 16, 3, 3), "c2w"),
        numpy_helper.from_array(np.zeros(32, np.float32), "c2b"),
        _weights(rng, (32, 10), "fcw"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fcb"),
        numpy_helper.from_array(np.array([-1, 32], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pool"]),
        helper.make_node("Reshape", ["pool", "flat"], ["feat"]),
        helper.make_node("Gemm", ["feat", "fcw", "fcb"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn_small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return ModelInfo("cnn_small", _model(graph), "x", (3, 32, 32), "y")


BUILDERS: dict[str, Callable[[], ModelInfo]] = {
    "mlp": mlp,
    "identity": identity,
    "cnn_small": cnn_small,
}


def build(name: str, version: int = 1) -> ModelInfo:
    """The reference model `name` (one of BUILDERS); versions other than 1 exist for
    `mlp` only."""
    if version == 1:
        return BUILDERS[name]()
    if name != "mlp":
        raise ValueError(f"{name} has version 1 only")
    return mlp(version)


def write_all(directory: Path) -> dict[str, Path]:
    """Write every reference model as `directory/<name>.onnx`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in BUILDERS:
        path = directory / f"{name}.onnx"
        path.write_bytes(build(name).onnx_bytes)
        paths[name] = path
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench/models")
    for name, path in write_all(target).items():
        print(f"{name}: {path}")
