"""Just enough of the Open Inference Protocol's wire format for the router's data path.

The router forwards the ModelInferRequest bytes it received instead of parsing and
re-encoding them: tensors can be megabytes, and the router needs four small fields. This
module reads those fields by walking the top-level protobuf fields of the request
(skipping tensor payloads without copying them), and encodes the few fields the router
changes.

Changing a field without re-encoding relies on a rule of the protobuf encoding: for a
singular (non-repeated) field, when a message holds it several times *the last one wins*,
and map entries with the same key likewise replace earlier ones. So the router appends
`model_name`/`model_version` (and `id` when the client sent none) to the request bytes,
and the `modelhub.*` parameters to the response bytes. Every conforming parser (the C++,
upb and Java runtimes, tritonclient's) reads the appended values.

Field numbers are those of `protos/modelhub/api/oip/grpc_predict_v2.proto`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from modelhub.common.errors import InvalidArgumentError

# ModelInferRequest fields.
_MODEL_NAME = 1
_MODEL_VERSION = 2
_ID = 3
_PARAMETERS = 4

# Wire types.
_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5

_DOUBLE = struct.Struct("<d")


class MalformedRequestError(InvalidArgumentError):
    """The request bytes are not a valid ModelInferRequest."""

    default_reason = "MALFORMED_REQUEST"


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise MalformedRequestError("truncated or overlong varint in the request")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


class RequestHeader:
    """The fields of a ModelInferRequest the router routes by. Strings are decoded; the
    parameters stay as byte spans of their map entries until someone asks for one."""

    __slots__ = ("data", "id", "model_name", "model_version", "param_spans")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.model_name = ""
        self.model_version = ""
        self.id = ""
        self.param_spans: list[tuple[int, int]] | None = None

    def parameter(self, name: str) -> str | None:
        """The request parameter `name` as text (last entry wins, like a map), or None."""
        if not self.param_spans:
            return None
        found: str | None = None
        for start, end in self.param_spans:
            entry = _map_entry(self.data, start, end)
            if entry is not None and entry[0] == name:
                found = entry[1]
        return found


def scan_request(data: bytes) -> RequestHeader:
    """Read model_name, model_version, id and the parameter spans of a serialized
    ModelInferRequest without decoding its tensors. Raises MalformedRequestError."""
    header = RequestHeader(data)
    pos = 0
    end = len(data)
    try:
        while pos < end:
            tag = data[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = _varint(data, pos)
            wire = tag & 7
            if wire == _LEN:
                length = data[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _varint(data, pos)
                stop = pos + length
                if stop > end:
                    raise MalformedRequestError("a field runs past the end of the request")
                field = tag >> 3
                if field <= _PARAMETERS:
                    if field == _MODEL_NAME:
                        header.model_name = data[pos:stop].decode()
                    elif field == _MODEL_VERSION:
                        header.model_version = data[pos:stop].decode()
                    elif field == _ID:
                        header.id = data[pos:stop].decode()
                    elif field == _PARAMETERS:
                        if header.param_spans is None:
                            header.param_spans = []
                        header.param_spans.append((pos, stop))
                pos = stop
            elif wire == _VARINT:
                _, pos = _varint(data, pos)
            elif wire == _FIXED64:
                pos += 8
            elif wire == _FIXED32:
                pos += 4
            else:
                raise MalformedRequestError(f"unsupported wire type {wire} in the request")
    except IndexError:
        raise MalformedRequestError("truncated request") from None
    except UnicodeDecodeError:
        raise MalformedRequestError("model_name, model_version and id must be UTF-8") from None
    if pos != end:
        raise MalformedRequestError("truncated request")
    return header


def _map_entry(data: bytes, start: int, end: int) -> tuple[str, str | None] | None:
    """(key, value as text) of one `map<string, InferParameter>` entry."""
    key = ""
    value: str | None = None
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN:
            length, pos = _varint(data, pos)
            stop = pos + length
            if field == 1:
                key = data[pos:stop].decode(errors="replace")
            elif field == 2:
                value = _parameter_text(data, pos, stop)
            pos = stop
        elif wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        else:
            return None
    return key, value


def _parameter_text(data: bytes, start: int, end: int) -> str | None:
    """An InferParameter's value as text: the form a sticky key takes whatever its kind."""
    value: str | None = None
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            number, pos = _varint(data, pos)
            if field == 1:  # bool_param
                value = "true" if number else "false"
            elif field == 2:  # int64_param (two's complement)
                value = str(number - (1 << 64) if number >= 1 << 63 else number)
            elif field == 5:  # uint64_param
                value = str(number)
        elif wire == _LEN:
            length, pos = _varint(data, pos)
            if field == 3:  # string_param
                value = data[pos : pos + length].decode(errors="replace")
            pos += length
        elif wire == _FIXED64:
            if field == 4:  # double_param
                number_f = _DOUBLE.unpack_from(data, pos)[0]
                value = str(int(number_f)) if number_f.is_integer() else repr(number_f)
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        else:
            return None
    return value


# ------------------------------------------------------------------------------ encoding


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | _LEN) + _encode_varint(len(payload)) + payload


def request_override(model: str, version: int) -> bytes:
    """Bytes that, appended to a ModelInferRequest, set model_name and model_version."""
    return _len_field(_MODEL_NAME, model.encode()) + _len_field(
        _MODEL_VERSION, str(version).encode()
    )


def request_id_field(request_id: str) -> bytes:
    """Bytes that, appended to a ModelInferRequest, set its id."""
    return _len_field(_ID, request_id.encode())


def string_parameters(parameters: Mapping[str, str]) -> bytes:
    """Bytes that, appended to a ModelInferRequest or ModelInferResponse (both carry
    `parameters` as field 4), add string parameters, replacing any set earlier under the
    same names."""
    out = b""
    for name, value in parameters.items():
        infer_parameter = _len_field(3, value.encode())  # string_param
        entry = _len_field(1, name.encode()) + _len_field(2, infer_parameter)
        out += _len_field(_PARAMETERS, entry)
    return out


# The router's own answers use the same encoding.
response_parameters = string_parameters
