"""A loaded version's input/output signature and the request checks made against it.

Built from the ONNX Runtime session itself (the authority on what the graph accepts), so
a request is validated against exactly what will run. A model is *batchable* when every
input and output has a dynamic first dimension: then rows of many requests can be
concatenated along it. Other models run one request per session call.

BYTES inputs arrive as object arrays of `bytes`; `prepare` hands them to the batcher as
ONNX Runtime takes string tensors (object arrays of `str`, UTF-8 checked per request, so a
bad element fails its own request, not the batch it would have joined).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelhub.common.dtypes import OIP_TO_NUMPY, ORT_TO_OIP, SERVABLE
from modelhub.common.errors import FailedPreconditionError, InvalidArgumentError
from modelhub.inference.codec import BYTES, ort_strings
from modelhub.inference.request import InputTensor
from modelhub.inference.spec import ModelSchema, TensorSpec

# Shapes of every input but the batch dimension: requests with equal keys can share a batch.
ShapeKey = tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class _Tensor:
    index: int
    name: str
    datatype: str
    dtype: np.dtype | None
    shape: tuple[int, ...]

    @property
    def strings(self) -> bool:
        """A string tensor (BYTES on the wire, `str` elements for ONNX Runtime)."""
        return self.datatype == BYTES


def _dims(shape: Sequence[object] | None) -> tuple[int, ...]:
    # ORT reports symbolic dimensions as strings and unknown ones as None.
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (shape or ()))


def schema_from_session(inputs: Sequence[object], outputs: Sequence[object]) -> ModelSchema:
    """A schema from `session.get_inputs()` / `get_outputs()` (ORT NodeArg objects)."""

    def spec(arg: object) -> TensorSpec:
        ort_type = str(getattr(arg, "type", ""))
        return TensorSpec(
            name=str(getattr(arg, "name", "")),
            datatype=ORT_TO_OIP.get(ort_type, ort_type),
            shape=_dims(getattr(arg, "shape", None)),
        )

    return ModelSchema(tuple(spec(a) for a in inputs), tuple(spec(a) for a in outputs))


def _why_unservable(datatype: str) -> str:
    for prefix, kind in (
        ("seq(", "an ONNX sequence"),
        ("map(", "an ONNX map"),
        ("optional(", "an ONNX optional"),
        ("sparse_tensor(", "a sparse tensor"),
    ):
        if datatype.startswith(prefix):
            return f"{datatype} ({kind}; only tensors can be served)"
    if datatype == "BF16":
        return "BF16 (bfloat16 has no numpy type: this server cannot carry it)"
    if datatype.startswith("tensor(") and datatype.endswith(")"):
        return f"{datatype} (no Open Inference Protocol datatype)"
    return f"{datatype or 'an unknown type'} (not a tensor type this server carries)"


def check_servable(schema: ModelSchema, model: str) -> None:
    """Refuse (FAILED_PRECONDITION, reason UNSUPPORTED_DATATYPE) a model with inputs or
    outputs that requests or answers cannot carry: such a version must fail to load, not
    be READY and then fail every call."""
    problems = [
        f"{role} {t.name!r} is {_why_unservable(t.datatype)}"
        for role, tensors in (("input", schema.inputs), ("output", schema.outputs))
        for t in tensors
        if t.datatype not in SERVABLE
    ]
    if problems:
        raise FailedPreconditionError(
            f"model {model} cannot be served: {'; '.join(problems)}. Served tensors have one "
            f"of the datatypes {', '.join(sorted(SERVABLE))}",
            reason="UNSUPPORTED_DATATYPE",
            metadata={"model": model},
        )


class ModelSignature:
    """Validates decoded inputs against a schema and orders them for the session."""

    def __init__(self, schema: ModelSchema, max_batch_size: int) -> None:
        self.schema = schema
        self.inputs = tuple(
            _Tensor(i, t.name, t.datatype, OIP_TO_NUMPY.get(t.datatype), t.shape)
            for i, t in enumerate(schema.inputs)
        )
        self.outputs = tuple(
            _Tensor(i, t.name, t.datatype, OIP_TO_NUMPY.get(t.datatype), t.shape)
            for i, t in enumerate(schema.outputs)
        )
        self.input_names = tuple(t.name for t in self.inputs)
        self.output_names = tuple(t.name for t in self.outputs)
        self._by_name = {t.name: t for t in self.inputs}
        self._output_index = {t.name: t.index for t in self.outputs}
        # Session positions of the string inputs (converted for ONNX Runtime in `prepare`).
        self._strings = tuple(t.index for t in self.inputs if t.strings)
        self.batchable = bool(self.inputs) and all(
            len(t.shape) >= 1 and t.shape[0] == -1 for t in (*self.inputs, *self.outputs)
        )
        self.max_rows = max(1, max_batch_size) if self.batchable else 1

    def prepare(
        self, tensors: Sequence[InputTensor]
    ) -> tuple[tuple[np.ndarray, ...], int, ShapeKey | None]:
        """Check `tensors` and return (arrays in session order, rows, shape key).

        The shape key is None for models that cannot batch (each request runs alone).
        """
        count = len(self.inputs)
        ready: tuple[np.ndarray, ...]
        positions: Sequence[int] = (0,)  # request position of each session input
        if count == 1 and len(tensors) == 1:  # the common case, without the bookkeeping
            self._check(0, tensors[0])
            ready = (tensors[0].data,)
        else:
            slots: list[np.ndarray | None] = [None] * count
            positions = [0] * count
            for position, tensor in enumerate(tensors):
                spec = self._check(position, tensor)
                if slots[spec.index] is not None:
                    raise InvalidArgumentError(
                        f"input {tensor.name!r} appears more than once",
                        field=f"inputs[{position}].name",
                    )
                slots[spec.index] = tensor.data
                positions[spec.index] = position
            missing = [t.name for t in self.inputs if slots[t.index] is None]
            if missing:
                raise InvalidArgumentError(
                    f"missing input(s) {', '.join(map(repr, missing))}; the model needs "
                    f"{', '.join(map(repr, self.input_names))}",
                    field="inputs",
                )
            ready = tuple(a for a in slots if a is not None)
        if not self.batchable:
            return (self._texts(ready, positions) if self._strings else ready), 1, None
        rows = ready[0].shape[0]
        for position, array in enumerate(ready):
            if array.shape[0] != rows:
                raise InvalidArgumentError(
                    f"inputs disagree on the number of rows: {self.input_names[0]!r} has "
                    f"{rows}, {self.input_names[position]!r} has {array.shape[0]}",
                    field="inputs",
                )
        if rows == 0:
            raise InvalidArgumentError("the request has zero rows", field="inputs[0].shape")
        if rows > self.max_rows:
            raise InvalidArgumentError(
                f"the request has {rows} rows; this model version takes at most "
                f"{self.max_rows} per request (max_batch_size)",
                field="inputs[0].shape",
            )
        if self._strings:  # last: a request refused above costs no decoding
            ready = self._texts(ready, positions)
        return ready, rows, tuple(a.shape[1:] for a in ready)

    def _texts(
        self, ready: tuple[np.ndarray, ...], positions: Sequence[int]
    ) -> tuple[np.ndarray, ...]:
        """`ready` with its string inputs decoded from UTF-8 for ONNX Runtime."""
        arrays = list(ready)
        for index in self._strings:
            position = positions[index]
            arrays[index] = ort_strings(
                arrays[index], self.input_names[index], f"inputs[{position}]"
            )
        return tuple(arrays)

    def _check(self, position: int, tensor: InputTensor) -> _Tensor:
        spec = self._by_name.get(tensor.name)
        if spec is None:
            raise InvalidArgumentError(
                f"unknown input {tensor.name!r}; the model's inputs are "
                f"{', '.join(map(repr, self.input_names))}",
                field=f"inputs[{position}].name",
            )
        if tensor.datatype != spec.datatype:
            raise InvalidArgumentError(
                f"input {spec.name!r} has datatype {spec.datatype}, not {tensor.datatype}",
                field=f"inputs[{position}].datatype",
            )
        shape = tensor.shape
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidArgumentError(
                f"input {spec.name!r} has shape {list(shape)}; the model expects "
                f"{list(spec.shape)} (-1: any size)",
                field=f"inputs[{position}].shape",
            )
        return spec

    def output_indices(self, names: Sequence[str]) -> tuple[int, ...]:
        """Session output positions for the requested names (all when empty)."""
        if not names:
            return tuple(range(len(self.outputs)))
        indices = []
        for position, name in enumerate(names):
            index = self._output_index.get(name)
            if index is None:
                raise InvalidArgumentError(
                    f"unknown output {name!r}; the model's outputs are "
                    f"{', '.join(map(repr, self.output_names))}",
                    field=f"outputs[{position}].name",
                )
            indices.append(index)
        return tuple(indices)
