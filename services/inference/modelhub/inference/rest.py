"""The Open Inference Protocol's REST infer bodies ↔ domain requests and results.

Two encodings (docs/rest.md):

* JSON: `{"id", "parameters", "inputs": [{"name", "shape", "datatype", "data"}], "outputs"}`
  with `data` a flat or nested array of numbers (BOOL: true/false, BYTES: strings, FP16:
  numbers), parsed by orjson and converted by one numpy call per tensor.
* The binary tensor extension (what tritonclient.http sends by default): the JSON header
  is the first `Inference-Header-Content-Length` bytes of the body and each input with the
  parameter `binary_data_size` takes that many bytes of what follows, in input order
  (little-endian, row-major; BYTES as 4-byte length-prefixed elements). Those inputs are
  views into the body: no copy.

Answers mirror the request: outputs asked for with `binary_data` (or every output with the
request parameter `binary_data_output`) travel after the JSON header, the others as JSON
`data`. Numbers are numbers, shapes are integers, empty fields are left out.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelhub.common.errors import InvalidArgumentError, PayloadTooLargeError
from modelhub.common.names import is_decimal
from modelhub.inference.codec import (
    bytes_payload_size,
    decode_raw,
    dtype_of,
    encode_bytes_raw,
    min_element_bytes,
)
from modelhub.inference.convert import checked_shape
from modelhub.inference.request import InferRequest, InferResult, InputTensor

# The binary tensor extension's header and parameters.
HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data"
BINARY_ALL_OUTPUTS = "binary_data_output"

_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class RestInfer:
    """A decoded REST infer request: the domain request and what the answer must echo."""

    request: InferRequest
    id: str = ""
    # Output name → answer it as binary data; `binary_all` for outputs not listed.
    binary: dict[str, bool] = field(default_factory=dict)
    binary_all: bool = False


def body_bytes(data: bytes, encoding: str, limit: int) -> bytes:
    """The request body after its `Content-Encoding` (gzip or deflate, as tritonclient
    compresses), never inflated past `limit` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise InvalidArgumentError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or identity",
            field="content-encoding",
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InvalidArgumentError(
            f"the body is not valid {encoding} data: {exc}", field="content-encoding"
        ) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    return out


def parse_infer(
    body: bytes,
    header_length: str | None,
    model: str,
    version: str,
    max_request_bytes: int,
) -> RestInfer:
    """Decode a REST infer body (`header_length`: the Inference-Header-Content-Length
    header, None for plain JSON) for `model`/`version` from the path."""
    view = memoryview(body)
    if header_length is not None:
        text = header_length.strip()
        if not is_decimal(text) or int(text) > len(body):
            raise InvalidArgumentError(
                f"Inference-Header-Content-Length {header_length[:32]!r} must be the length "
                f"of the JSON header in bytes (the body holds {len(body)})",
                field=HEADER_LENGTH,
            )
        length = int(text)
    else:
        length = len(body)
    try:
        document = orjson.loads(view[:length])
    except orjson.JSONDecodeError as exc:
        raise InvalidArgumentError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError("the request body must be a JSON object with `inputs`")
    binary = view[length:]
    inputs, used = _inputs(document.get("inputs"), binary, max_request_bytes)
    if used != len(binary):
        raise InvalidArgumentError(
            f"the body carries {len(binary)} bytes after the JSON header; the inputs' "
            f"binary_data_size parameters account for {used}",
            field="inputs",
        )
    parameters = _object(document.get("parameters"), "parameters")
    outputs, flags = _outputs(document.get("outputs"))
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgumentError("id must be a string", field="id")
    request = InferRequest(
        model=model,
        version=version,
        inputs=inputs,
        outputs=outputs,
        priority=_integer(parameters, "priority", 0),
    )
    timeout_us = _integer(parameters, "timeout", 0)  # microseconds, as tritonclient sends it
    if timeout_us > 0:
        request.timeout_s = timeout_us / 1e6
    binary_all = parameters.get(BINARY_ALL_OUTPUTS, False)
    if not isinstance(binary_all, bool):
        raise InvalidArgumentError(
            f"parameter {BINARY_ALL_OUTPUTS} must be true or false",
            field=f"parameters.{BINARY_ALL_OUTPUTS}",
        )
    request.id = request_id
    return RestInfer(request, request_id, flags, binary_all)


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{name} must be a JSON object", field=name)
    return value


def _integer(parameters: Mapping[str, Any], name: str, default: int) -> int:
    value = parameters.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"parameter {name!r} must be an integer", field=f"parameters.{name}"
        )
    return value


def _inputs(
    tensors: Any, binary: memoryview, max_request_bytes: int
) -> tuple[list[InputTensor], int]:
    if not isinstance(tensors, list) or not tensors:
        raise InvalidArgumentError("the request has no inputs", field="inputs")
    inputs: list[InputTensor] = []
    offset = 0
    size = 0
    for index, tensor in enumerate(tensors):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise InvalidArgumentError(f"{where} must be a JSON object", field=where)
        name, datatype, dims = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"{where}.name is required", field=f"{where}.name")
        if not isinstance(datatype, str):
            raise InvalidArgumentError(f"{where}.datatype is required", field=f"{where}.datatype")
        if not isinstance(dims, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in dims
        ):
            raise InvalidArgumentError(
                f"{where}.shape must be an array of integers", field=f"{where}.shape"
            )
        dtype = dtype_of(datatype, f"{where}.datatype")
        itemsize = min_element_bytes(datatype, f"{where}.datatype")
        shape = checked_shape(dims, itemsize, max_request_bytes, where)
        parameters = _object(tensor.get("parameters"), f"{where}.parameters")
        binary_size = parameters.get(BINARY_SIZE)
        if binary_size is not None:
            if "data" in tensor:
                raise InvalidArgumentError(
                    f"{where} carries both `data` and binary data ({BINARY_SIZE}); send one",
                    field=f"{where}.data",
                )
            if (
                isinstance(binary_size, bool)
                or not isinstance(binary_size, int)
                or binary_size < 0
                or offset + binary_size > len(binary)
            ):
                raise InvalidArgumentError(
                    f"{where}.parameters.{BINARY_SIZE} ({binary_size!r}) exceeds the "
                    f"{len(binary) - offset} bytes left in the body",
                    field=f"{where}.parameters",
                )
            data = decode_raw(binary[offset : offset + binary_size], datatype, shape, index)
            offset += binary_size
            size += binary_size
        else:
            if "data" not in tensor:
                raise InvalidArgumentError(f"{where} has no data", field=f"{where}.data")
            data = _json_data(tensor["data"], datatype, dtype, shape, where)
            # reshape(-1), not .flat: numpy's flat iterator stops at 32 dimensions.
            size += (
                data.nbytes if dtype.kind != "O" else bytes_payload_size(data.reshape(-1).tolist())
            )
        if size > max_request_bytes:
            raise _too_large(max_request_bytes)
        inputs.append(InputTensor(name, datatype, shape, data))
    return inputs, offset


def _json_data(
    values: Any, datatype: str, dtype: np.dtype, shape: tuple[int, ...], where: str
) -> np.ndarray:
    count = 1
    for dim in shape:
        count *= dim
    if not isinstance(values, list):
        values = [values]
    if dtype.kind == "O":
        flat = _flatten(values, where)
        array = np.empty(len(flat), dtype=object)
        for i, item in enumerate(flat):
            if not isinstance(item, str):
                raise InvalidArgumentError(
                    f"{where}.data must hold strings for BYTES", field=f"{where}.data"
                )
            array[i] = item.encode("utf-8")
    else:
        try:
            # The JSON values' own type first: 1.5 must not become 1 in an INT32 tensor.
            parsed = np.asarray(values)
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(
                f"{where}.data is not a regular array of {datatype} values: {exc}",
                field=f"{where}.data",
            ) from None
        allowed = _KINDS[dtype.kind]
        if parsed.size and dtype.kind in "iu" and parsed.dtype.kind in "fO":
            # Integers past int64 (UINT64's upper half) make numpy infer floats: keep them
            # exact when every value is an integer.
            parsed = _exact_integers(values, parsed, where)
        if parsed.size and parsed.dtype.kind not in allowed:
            raise InvalidArgumentError(
                f"{where}.data holds {_kind_name(parsed.dtype)}, not {datatype} values",
                field=f"{where}.data",
            )
        if parsed.size and dtype.kind in "iu":
            info = np.iinfo(dtype)
            if int(parsed.min()) < info.min or int(parsed.max()) > info.max:
                raise InvalidArgumentError(
                    f"{where}.data holds values outside the range of {datatype}",
                    field=f"{where}.data",
                )
        array = parsed.astype(dtype, copy=False)
    if array.size != count:
        raise InvalidArgumentError(
            f"{where}.data holds {array.size} values; shape {list(shape)} needs {count}",
            field=f"{where}.data",
        )
    return array.reshape(shape)


def _exact_integers(values: list[Any], parsed: np.ndarray, where: str) -> np.ndarray:
    flat = _flatten(values, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return parsed
    if min(flat) < 0:
        return parsed  # int64 overflow below: the range check refuses it
    try:
        return np.array(flat, dtype=np.uint64).reshape(parsed.shape)
    except OverflowError:
        return parsed


def _flatten(values: list[Any], where: str) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(values)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 64:
                    raise InvalidArgumentError(
                        f"{where}.data is nested too deeply", field=f"{where}.data"
                    )
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}.get(
        dtype.kind, "strings or mixed values"
    )


def _outputs(value: Any) -> tuple[list[str], dict[str, bool]]:
    if value is None:
        return [], {}
    if not isinstance(value, list):
        raise InvalidArgumentError("outputs must be an array", field="outputs")
    names: list[str] = []
    flags: dict[str, bool] = {}
    for index, output in enumerate(value):
        where = f"outputs[{index}]"
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidArgumentError(f"{where} must be an object with a name", field=where)
        name = output["name"]
        parameters = _object(output.get("parameters"), f"{where}.parameters")
        if parameters.get("classification"):
            raise InvalidArgumentError(
                "the classification extension is not supported: request the output's "
                "values and rank them client-side",
                field=f"{where}.parameters.classification",
            )
        flag = parameters.get(BINARY_OUTPUT, False)
        if not isinstance(flag, bool):
            raise InvalidArgumentError(
                f"{where}.parameters.{BINARY_OUTPUT} must be true or false",
                field=f"{where}.parameters",
            )
        names.append(name)
        flags[name] = flag
    return names, flags


def render_infer(
    call: RestInfer, result: InferResult, served: list[tuple[str, str]], request_id: str
) -> tuple[bytes, int | None]:
    """The answer body, and the JSON header's length when binary outputs follow it."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in result.outputs:
        data = output.data
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(data.shape),
        }
        if call.binary.get(output.name, call.binary_all):
            raw = encode_bytes_raw(data) if data.dtype.kind == "O" else data.tobytes()
            entry["parameters"] = {BINARY_SIZE: len(raw)}
            chunks.append(raw)
        elif data.dtype.kind == "O":
            entry["data"] = [_text(item) for item in data.flat]
        else:
            entry["data"] = np.ascontiguousarray(data).reshape(-1)
        outputs.append(entry)
    answer: dict[str, Any] = {
        "model_name": result.model,
        "model_version": str(result.version),
    }
    if call.id or request_id:
        answer["id"] = call.id or request_id
    if served:
        answer["parameters"] = dict(served)
    answer["outputs"] = outputs
    header = orjson.dumps(answer, option=_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _text(item: object) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return str(item)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request's tensor data exceeds the limit of {limit} bytes",
        metadata={"limit_bytes": str(limit)},
    )
