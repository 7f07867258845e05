"""Tensor datatypes: Open Inference Protocol names ↔ numpy ↔ ONNX element types."""

from __future__ import annotations

import numpy as np

# Open Inference Protocol datatype → numpy dtype (little-endian, as on the wire). BYTES
# tensors are object arrays whose elements are Python `bytes` (length-prefixed on the wire).
OIP_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype("object"),
}

NUMPY_TO_OIP: dict[np.dtype, str] = {v: k for k, v in OIP_TO_NUMPY.items()}

# The datatypes this server carries end to end (request, session, response). A model whose
# inputs or outputs have any other type — BF16 (no numpy dtype), ONNX element types without
# an Open Inference Protocol datatype (complex, float8, int4…), sequences, maps, optionals —
# is refused when a version is loaded.
SERVABLE: frozenset[str] = frozenset(OIP_TO_NUMPY)

# ONNX TensorProto.DataType value → Open Inference Protocol datatype.
ONNX_TO_OIP: dict[int, str] = {
    1: "FP32",  # FLOAT
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",  # STRING
    9: "BOOL",
    10: "FP16",  # FLOAT16
    11: "FP64",  # DOUBLE
    12: "UINT32",
    13: "UINT64",
    16: "BF16",  # BFLOAT16
}

# ONNX Runtime's type strings ("tensor(float)") → Open Inference Protocol datatype.
ORT_TO_OIP: dict[str, str] = {
    "tensor(float)": "FP32",
    "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8",
    "tensor(uint16)": "UINT16",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(string)": "BYTES",
    "tensor(bool)": "BOOL",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bfloat16)": "BF16",
}


def numpy_dtype(datatype: str) -> np.dtype | None:
    """The numpy dtype of an Open Inference Protocol datatype, or None if unsupported."""
    return OIP_TO_NUMPY.get(datatype)


# The InferTensorContents field that carries each datatype as typed values (FP16 and BF16
# have none: raw contents only).
TYPED_CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
