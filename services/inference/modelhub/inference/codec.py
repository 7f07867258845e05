"""Tensor payload decoding: wire bytes or typed values → numpy arrays, with the checks
that need no model (known datatype, sane shape, byte length matching the shape).

Raw payloads are viewed with `numpy.frombuffer` (no copy, no per-element Python work);
typed contents go through one `numpy.asarray` call per tensor.

BYTES (string) tensors are numpy object arrays whose elements are Python `bytes`. In raw
contents each element is a 4-byte little-endian length followed by its bytes, row-major
(the protocol's encoding, what tritonclient sends and reads); typed contents carry them in
`bytes_contents`. ONNX Runtime takes and returns string tensors as object arrays of `str`:
`ort_strings` and `bytes_elements` convert at the session boundary.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from modelhub.common.dtypes import OIP_TO_NUMPY
from modelhub.common.errors import InvalidArgumentError

# Datatypes a tensor may carry through this service.
SUPPORTED: dict[str, np.dtype] = dict(OIP_TO_NUMPY)

BYTES = "BYTES"
# Bytes of the length prefix of each BYTES element in raw contents (uint32, little-endian).
LENGTH_PREFIX = 4
_PREFIX = struct.Struct("<I")
_MAX_ELEMENT = (1 << 32) - 1


def dtype_of(datatype: str, field: str) -> np.dtype:
    """The numpy dtype of a wire datatype, or INVALID_ARGUMENT naming `field`."""
    dtype = SUPPORTED.get(datatype)
    if dtype is None:
        names = ", ".join(sorted(SUPPORTED))
        raise InvalidArgumentError(
            f"datatype {datatype!r} is not supported; expected one of {names}", field=field
        )
    return dtype


def min_element_bytes(datatype: str, field: str) -> int:
    """The fewest raw bytes one element of `datatype` takes (its itemsize; BYTES: the
    length prefix of an empty element), or INVALID_ARGUMENT naming `field`."""
    if datatype == BYTES:
        return LENGTH_PREFIX
    return dtype_of(datatype, field).itemsize


def element_count(shape: Sequence[int], field: str) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidArgumentError(
                f"shape {list(shape)} has a negative dimension; send concrete sizes", field=field
            )
        count *= dim
    return count


def decode_raw(
    raw: bytes | memoryview, datatype: str, shape: tuple[int, ...], index: int
) -> np.ndarray:
    """View little-endian row-major `raw` (the payload of input `index`) as an array of
    `shape`: read-only, no copy (BYTES: an object array of the elements, see
    `decode_bytes_raw`). Field names are only formatted for errors."""
    if datatype == BYTES:
        return decode_bytes_raw(raw, shape, f"inputs[{index}]")
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
    if datatype == BYTES:
        return decode_bytes_typed(values, shape, field)
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


# ---------------------------------------------------------------------- BYTES tensors


def decode_bytes_raw(raw: bytes | memoryview, shape: tuple[int, ...], field: str) -> np.ndarray:
    """Length-prefixed BYTES elements (`raw`, row-major) as an object array of `bytes` with
    `shape`; INVALID_ARGUMENT on `field` when the prefixes do not match the payload or the
    shape (truncated prefix, an element longer than what is left, more or fewer elements
    than the shape holds).

    Nothing is allocated before the payload is known to be large enough for the shape's
    length prefixes, and each element is a copy of bytes that the payload really holds, so
    the result never outgrows what was sent (beyond Python's per-object overhead).
    """
    count = element_count(shape, f"{field}.shape")
    view = raw if isinstance(raw, bytes) else memoryview(raw).cast("B")
    size = len(view)
    if count * LENGTH_PREFIX > size:
        raise InvalidArgumentError(
            f"raw contents of {field} hold {size} bytes: too few for the {count} BYTES "
            f"elements of shape {list(shape)} (each takes a {LENGTH_PREFIX}-byte length prefix "
            "and its bytes)",
            field=field,
        )
    out = np.empty(count, dtype=object)
    unpack = _PREFIX.unpack_from
    position = 0
    for element in range(count):
        if position + LENGTH_PREFIX > size:
            raise InvalidArgumentError(
                f"raw contents of {field} end inside the length prefix of element {element} "
                f"(at byte {position} of {size}): shape {list(shape)} needs {count} "
                "length-prefixed elements",
                field=field,
            )
        (length,) = unpack(view, position)
        start = position + LENGTH_PREFIX
        end = start + length
        if end > size:
            raise InvalidArgumentError(
                f"element {element} of {field} declares {length} bytes (length prefix at byte "
                f"{position}) but only {size - start} remain in its raw contents",
                field=field,
            )
        out[element] = bytes(view[start:end])
        position = end
    if position != size:
        raise InvalidArgumentError(
            f"raw contents of {field} hold {size - position} bytes after the {count} "
            f"elements of shape {list(shape)}: the length prefixes describe more elements "
            "than the shape holds",
            field=field,
        )
    return out.reshape(shape)


def decode_bytes_typed(values: Sequence[object], shape: tuple[int, ...], field: str) -> np.ndarray:
    """Typed BYTES contents (`bytes_contents`) as an object array of `bytes` with `shape`."""
    count = element_count(shape, f"{field}.shape")
    if len(values) != count:
        raise InvalidArgumentError(
            f"contents of {field} hold {len(values)} values; shape {list(shape)} needs {count}",
            field=field,
        )
    out = np.fromiter(values, dtype=object, count=count)
    for element, value in enumerate(out):
        if not isinstance(value, bytes):
            raise InvalidArgumentError(
                f"element {element} of {field} is {type(value).__name__}, not bytes",
                field=field,
            )
    return out.reshape(shape)


def bytes_payload_size(values: Sequence[bytes]) -> int:
    """What BYTES elements weigh against the request limit: their bytes plus a length
    prefix each (what the raw encoding of the same elements takes)."""
    return sum(map(len, values)) + LENGTH_PREFIX * len(values)


def _element_bytes(element: int, item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise TypeError(f"BYTES element {element} is {type(item).__name__}, not bytes or str")


def encode_bytes_raw(array: np.ndarray) -> bytes:
    """The raw contents of a BYTES tensor: each element as a 4-byte little-endian length and
    its bytes, row-major. Takes object arrays of `bytes` or `str` (UTF-8 encoded) and numpy
    'S' / 'U' arrays (numpy itself drops the trailing NULs of 'S' elements)."""
    flat = np.asarray(array).ravel(order="C")
    kind = flat.dtype.kind
    items: list[bytes]
    if kind == "S":
        items = flat.tolist()
    elif kind == "U":
        items = [text.encode("utf-8") for text in flat.tolist()]
    elif kind == "O":
        items = [_element_bytes(i, item) for i, item in enumerate(flat.tolist())]
    else:
        raise TypeError(f"a BYTES tensor needs bytes or str elements, not {flat.dtype}")
    pack = _PREFIX.pack
    parts: list[bytes] = []
    append = parts.append
    for element, item in enumerate(items):
        length = len(item)
        if length > _MAX_ELEMENT:
            raise ValueError(
                f"BYTES element {element} has {length} bytes; the length prefix holds at most "
                f"{_MAX_ELEMENT}"
            )
        append(pack(length))
        append(item)
    return b"".join(parts)


def _text(element: int, item: object, name: str, field: str) -> str:
    if isinstance(item, str):  # built in process: taken as it is
        return item
    if not isinstance(item, bytes):
        raise InvalidArgumentError(
            f"element {element} of input {name!r} is {type(item).__name__}, not bytes",
            field=field,
        )
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"element {element} of input {name!r} is not valid UTF-8 ({exc.reason} at byte "
            f"{exc.start}); the model takes text: ONNX string tensors hold UTF-8",
            field=field,
        ) from None


def ort_strings(array: np.ndarray, name: str, field: str) -> np.ndarray:
    """A BYTES input (object array of `bytes`) as ONNX Runtime takes string tensors: an
    object array of `str`, same shape. INVALID_ARGUMENT on `field` naming input `name` when
    an element is not UTF-8 (ONNX string tensors hold text)."""
    items = array.ravel().tolist()
    try:
        texts = [item.decode("utf-8") for item in items]
    except (UnicodeDecodeError, AttributeError):  # find the culprit, or take str as is
        texts = [_text(element, item, name, field) for element, item in enumerate(items)]
    return np.fromiter(texts, dtype=object, count=len(texts)).reshape(array.shape)


def bytes_elements(array: np.ndarray) -> np.ndarray:
    """A string output of ONNX Runtime (object array of `str`) as a BYTES tensor: an
    object array of UTF-8 `bytes`, same shape."""
    items = [_element_bytes(i, item) for i, item in enumerate(array.ravel().tolist())]
    return np.fromiter(items, dtype=object, count=len(items)).reshape(array.shape)
