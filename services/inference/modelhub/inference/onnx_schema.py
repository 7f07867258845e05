"""Reads a model's input/output schema from ONNX bytes (for sources without a registry)."""

from __future__ import annotations

import onnx

from modelhub.common.dtypes import ONNX_TO_OIP
from modelhub.common.errors import InvalidArtifactError
from modelhub.inference.spec import ModelSchema, TensorSpec


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorSpec(value.name, ONNX_TO_OIP.get(tensor.elem_type, "UNKNOWN"), dims)


def read_schema(data: bytes) -> ModelSchema:
    """Graph inputs (initializers excluded) and outputs of a serialized ONNX model."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise InvalidArtifactError(f"not an ONNX model: {exc}") from exc
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in model.graph.output)
    return ModelSchema(inputs, outputs)
