"""Tensor payload decoding: wire bytes or typed values → numpy arrays, with the checks
that need no model (known datatype, sane shape, byte length matching the shape).

Raw payloads are viewed with `numpy.frombuffer` (no copy, no per-element Python work);
typed contents go through one `numpy.asarray` call per tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelhub.common.dtypes import OIP_TO_NUMPY
from modelhub.common.errors import InvalidArgumentError

# Datatypes a tensor may carry through this service. BYTES (string tensors) needs the
# length-prefixed encoding and object arrays; it is refused with a clear message.
SUPPORTED: dict[str, np.dtype] = {k: v for k, v in OIP_TO_NUMPY.items() if k != "BYTES"}


def dtype_of(datatype: str, field: str) -> np.dtype:
    """The numpy dtype of a wire datatype, or INVALID_ARGUMENT naming `field`."""
    dtype = SUPPORTED.get(datatype)
    if dtype is None:
        names = ", ".join(sorted(SUPPORTED))
        raise InvalidArgumentError(
            f"datatype {datatype!r} is not supported; expected one of {names}", field=field
        )
    return dtype


def element_count(shape: Sequence[int], field: str) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidArgumentError(
                f"shape {list(shape)} has a negative dimension; send concrete sizes", field=field
            )
        count *= dim
    return count


def decode_raw(raw: bytes, datatype: str, shape: tuple[int, ...], index: int) -> np.ndarray:
    """View little-endian row-major `raw` (the payload of input `index`) as an array of
    `shape`: read-only, no copy. Field names are only formatted for errors."""
    dtype = SUPPORTED.get(datatype)
    if dtype is None:
        dtype = dtype_of(datatype, f"inputs[{index}].datatype")  # raises
    count = 1
    for dim in shape:
        if dim < 0:
            element_count(shape, f"inputs[{index}].shape")
        count *= dim
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgumentError(
            f"raw contents of inputs[{index}] hold {len(raw)} bytes; shape {list(shape)} of "
            f"{datatype} needs {expected}",
            field=f"inputs[{index}]",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def decode_typed(
    values: Sequence[object], datatype: str, shape: tuple[int, ...], field: str
) -> np.ndarray:
    """Convert typed contents (already the repeated field matching `datatype`)."""
    dtype = dtype_of(datatype, f"{field}.datatype")
    count = element_count(shape, f"{field}.shape")
    if len(values) != count:
        raise InvalidArgumentError(
            f"contents of {field} hold {len(values)} values; shape {list(shape)} needs {count}",
            field=field,
        )
    narrow_int = dtype.kind in "iu" and dtype.itemsize < 8
    try:
        # Typed int_contents/uint_contents carry INT8/16 and UINT8/16 widened to 32 bits:
        # refuse values that do not fit rather than wrap them silently.
        array = np.asarray(values, dtype=np.int64 if narrow_int else dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(
            f"contents of {field} cannot be read as {datatype}: {exc}", field=field
        ) from None
    if narrow_int:
        info = np.iinfo(dtype)
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise InvalidArgumentError(
                f"contents of {field} hold values outside the range of {datatype}", field=field
            )
        array = array.astype(dtype)
    return array.reshape(shape)
