"""A model's input/output schema, read from its ONNX graph: the registry's rules, the one
reader of the suite (the registry on upload, inference for models from a directory, the
optimizer and the batch scorer).

Inputs are the graph's inputs that are no initializers; every input and output must be a
tensor of an element type the Open Inference Protocol can carry; a dimension without a
positive size is dynamic (-1, its ONNX name kept in `dim_names`).

Needs the `onnx` package (the units that read models carry it; `modelhub-common[onnx]`).
"""

from __future__ import annotations

import onnx
from google.protobuf.message import DecodeError

from modelhub.common.contract import ModelSchema, TensorSpec
from modelhub.common.dtypes import ONNX_TO_OIP
from modelhub.common.errors import InvalidArtifactError


def first_line(text: str, limit: int = 300) -> str:
    """The first line of an error text, at most `limit` characters."""
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tensor_spec(value: onnx.ValueInfoProto, role: str) -> TensorSpec:
    """One graph input or output ("input"/"output" in `role`, for the messages)."""
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
    dim_names: list[str] = []
    if tensor.HasField("shape"):
        for dim in tensor.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
                dim_names.append("")
            else:
                shape.append(-1)
                dim_names.append(dim.dim_param)
    return TensorSpec(value.name, datatype, tuple(shape), tuple(dim_names))


def schema_of(model: onnx.ModelProto) -> ModelSchema:
    """The schema of a parsed model; InvalidArtifactError with a message a person can act
    on when it cannot be served."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = tuple(tensor_spec(v, "input") for v in graph.input if v.name not in initializers)
    outputs = tuple(tensor_spec(v, "output") for v in graph.output)
    if not inputs:
        raise InvalidArtifactError("the ONNX graph has no inputs")
    if not outputs:
        raise InvalidArtifactError("the ONNX graph has no outputs")
    return ModelSchema(
        inputs=inputs,
        outputs=outputs,
        opsets=tuple((op.domain, op.version) for op in model.opset_import),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        ir_version=model.ir_version,
        graph_name=graph.name,
    )


def not_onnx(exc: BaseException) -> InvalidArtifactError:
    return InvalidArtifactError(
        "the artifact is not an ONNX model (its bytes do not parse as an ONNX "
        f"ModelProto: {first_line(str(exc)) or type(exc).__name__}); upload the .onnx file "
        "itself, complete"
    )


def read_schema(data: bytes) -> ModelSchema:
    """The schema of a serialized ONNX model (external data is not needed)."""
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise not_onnx(exc) from None
    return schema_of(model)
