"""Validation of uploaded ONNX artifacts and extraction of their input/output schema."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from modelhub.common.dtypes import ONNX_TO_OIP
from modelhub.common.errors import InvalidArtifactError
from modelhub.registry.resources import ModelSchema, TensorSpec


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _tensor_spec(value: onnx.ValueInfoProto, role: str) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise InvalidArtifactError(
            f"{role} {value.name!r} is a {kind or 'untyped'} value; only tensor inputs and "
            "outputs can be served"
        )
    tensor = value.type.tensor_type
    datatype = ONNX_TO_OIP.get(tensor.elem_type)
    if datatype is None:
        raise InvalidArtifactError(
            f"{role} {value.name!r} has ONNX element type "
            f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}, which cannot be served"
        )
    shape: list[int] = []
    names: list[str] = []
    if tensor.HasField("shape"):
        for dim in tensor.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
                names.append("")
            else:
                shape.append(-1)
                names.append(dim.dim_param)
    return TensorSpec(name=value.name, datatype=datatype, shape=shape, dim_names=names)


def inspect_onnx(path: Path) -> ModelSchema:
    """Check an ONNX file with `onnx.checker` and read its schema (blocking: use a thread).

    Raises InvalidArtifactError with a message a person can act on.
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidArtifactError(
            "the artifact is not an ONNX model (its bytes do not parse as an ONNX "
            f"ModelProto: {_first_line(str(exc)) or type(exc).__name__}); upload the .onnx file "
            "itself, complete"
        ) from None
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise InvalidArtifactError(
            f"the ONNX checker rejected the model: {_first_line(str(exc))}"
        ) from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [_tensor_spec(v, "input") for v in graph.input if v.name not in initializers]
    outputs = [_tensor_spec(v, "output") for v in graph.output]
    if not inputs:
        raise InvalidArtifactError("the ONNX graph has no inputs")
    if not outputs:
        raise InvalidArtifactError("the ONNX graph has no outputs")
    return ModelSchema(
        inputs=inputs,
        outputs=outputs,
        opsets=[(op.domain, op.version) for op in model.opset_import],
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        ir_version=model.ir_version,
        graph_name=graph.name,
    )
