"""REST bodies for the Open Inference Protocol's HTTP API (docs/rest.md).

Envoy's transcoder hands REST calls to the services as `google.api.HttpBody`; these are
the pieces every REST edge shares: reading a JSON body, answering JSON, and printing a
protobuf message the way the protocol's REST examples do (proto field names, 64-bit
integers as JSON numbers, no empty fields).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, cast

import orjson
from google.api import httpbody_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelhub.common.errors import InvalidArgumentError

JSON = "application/json"

_INT64 = frozenset(
    (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    )
)


def json_body(value: Any, *, options: int = 0) -> httpbody_pb2.HttpBody:
    """`value` as a JSON answer (orjson: numpy arrays serialize natively)."""
    return httpbody_pb2.HttpBody(content_type=JSON, data=orjson.dumps(value, option=options))


def empty_body() -> httpbody_pb2.HttpBody:
    """An answer whose status says it all (e.g. 200 from a ready endpoint)."""
    return httpbody_pb2.HttpBody()


def read_json(body: httpbody_pb2.HttpBody, what: str) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is `{}`."""
    data = body.data
    if not data.strip():
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgumentError(f"the {what} body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            f"the {what} body must be a JSON object, not {type(value).__name__}"
        )
    return value


def message_dict(message: Message, *, defaults: bool = False) -> dict[str, Any]:
    """A protobuf message as the protocol's JSON: proto field names, 64-bit integers as
    numbers (protobuf's JSON mapping prints them as strings), enums by name, bytes as
    base64, maps as objects. Only set fields, unless `defaults` (Triton's statistics print
    every counter, zeros included; unset oneof members stay out)."""
    out: dict[str, Any] = {}
    fields: Sequence[tuple[FieldDescriptor, Any]]
    if defaults:
        fields = [
            (cast(FieldDescriptor, f), getattr(message, f.name))
            for f in message.DESCRIPTOR.fields
            if f.containing_oneof is None or message.WhichOneof(f.containing_oneof.name) == f.name
        ]
    else:
        fields = message.ListFields()
    for field, value in fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {
                key: _scalar(value_field, item, defaults) for key, item in value.items()
            }
        elif field.is_repeated:
            out[field.name] = [_scalar(field, item, defaults) for item in value]
        else:
            out[field.name] = _scalar(field, value, defaults)
    return out


def _scalar(field: FieldDescriptor, value: Any, defaults: bool) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_dict(value, defaults=defaults)
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        described = enum.values_by_number.get(value) if enum is not None else None
        return described.name if described is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type in _INT64:
        return int(value)
    return value
