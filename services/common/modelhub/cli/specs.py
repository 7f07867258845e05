"""The resource files the `modelhub` command reads (`endpoints apply`, `deployments apply`,
`models push --profile`), described once.

A file is the protobuf JSON of the resource message (proto field names, or protobuf's
lowerCamelCase JSON names), with `//` and `/* */` comments allowed. The annotated example
and the JSON Schema that `modelhub endpoints example [--schema]` prints are derived from
those same messages and from their comments in protos/ (the contract the registry
validates against): a field added to the proto shows up in both, with its documentation.
Fields documented "Required." are required in the schema; "Output only." fields are
`readOnly` (accepted, ignored: a file saved with `get --json` applies again).
"""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto
from google.protobuf.message import Message

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.cli.output import message_dict

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# ------------------------------------------------------------------------------ reading


def strip_comments(text: str) -> str:
    """JSON with `//` and `/* */` comments → JSON (comments outside strings become
    spaces, so line and column numbers in error messages stay right)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
            i += 1
            continue
        pair = text[i : i + 2]
        if pair in ("//", "/*"):
            end = text.find("\n" if pair == "//" else "*/", i + 2)
            end = n if end < 0 else end + (0 if pair == "//" else 2)
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
            continue
        in_string = c == '"'
        out.append(c)
        i += 1
    return "".join(out)


def read_message(path: str, message: Message) -> Message:
    """Parse `path` (`-`: stdin) into `message`; ValueError naming the file when it is
    not such a message."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    where = "stdin" if path == "-" else path
    try:
        return json_format.Parse(strip_comments(text), message)
    except json_format.ParseError as exc:
        raise ValueError(
            f"{where} is not a valid {message.DESCRIPTOR.name} file: {exc} "
            f"(see `modelhub {_command(message)} example`)"
        ) from None


def _command(message: Message) -> str:
    for kind in KINDS.values():
        if kind.message.DESCRIPTOR.full_name == message.DESCRIPTOR.full_name:
            return kind.command
    return "endpoints"


# ----------------------------------------------------------------------- documentation

_MESSAGE, _FIELD, _NESTED, _ENUM_IN_MESSAGE, _ENUM_IN_FILE, _ENUM_VALUE = 4, 2, 3, 4, 5, 2


def _comment(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


def _message_comments(
    found: dict[str, str],
    where: dict[tuple[int, ...], str],
    message: DescriptorProto,
    path: tuple[int, ...],
    name: str,
) -> None:
    found[name] = where.get(path, "")
    for i, field in enumerate(message.field):
        found[f"{name}.{field.name}"] = where.get((*path, _FIELD, i), "")
    for i, nested in enumerate(message.nested_type):
        _message_comments(found, where, nested, (*path, _NESTED, i), f"{name}.{nested.name}")
    for i, enum in enumerate(message.enum_type):
        enum_path = (*path, _ENUM_IN_MESSAGE, i)
        for j, value in enumerate(enum.value):
            found[f"{name}.{enum.name}.{value.name}"] = where.get((*enum_path, _ENUM_VALUE, j), "")


def _file_comments(found: dict[str, str], proto: FileDescriptorProto) -> None:
    where = {
        tuple(loc.path): _comment(loc.leading_comments)
        for loc in proto.source_code_info.location
        if loc.leading_comments.strip()
    }
    prefix = f"{proto.package}." if proto.package else ""
    for i, message in enumerate(proto.message_type):
        _message_comments(found, where, message, (_MESSAGE, i), prefix + message.name)
    for i, enum in enumerate(proto.enum_type):
        for j, value in enumerate(enum.value):
            key = f"{prefix}{enum.name}.{value.name}"
            found[key] = where.get((_ENUM_IN_FILE, i, _ENUM_VALUE, j), "")


@cache
def comments() -> dict[str, str]:
    """Leading comments of the contract's messages, fields and enum values by full name
    (from the descriptor set `make proto` writes, which keeps them)."""
    from modelhub.common.reflection import load_descriptor_set

    found: dict[str, str] = {}
    for proto in load_descriptor_set():
        _file_comments(found, proto)
    return found


def field_doc(field: FieldDescriptor) -> str:
    return comments().get(field.full_name, "")


def _enum_values(enum: EnumDescriptor) -> list[tuple[str, int, str]]:
    """(name, number, comment) of the values a file may name (not the *_UNSPECIFIED one)."""
    return [
        (v.name, v.number, comments().get(f"{enum.full_name}.{v.name}", ""))
        for v in enum.values
        if v.number != 0
    ]


def _enum_doc(enum: EnumDescriptor) -> str:
    values = [f"{n} — {doc.rstrip('.')}" if doc else n for n, _, doc in _enum_values(enum)]
    return "One of: " + "; ".join(values) + "."


# ----------------------------------------------------------------------------- schema

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "required": ["@type"]},
}
_INT64 = {"type": ["integer", "string"], "pattern": r"^-?[0-9]+$"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: {"type": ["integer", "string"], "pattern": r"^[0-9]+$"},
    FieldDescriptor.TYPE_FIXED64: {"type": ["integer", "string"], "pattern": r"^[0-9]+$"},
}


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _single_schema(field: FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    if field.enum_type is not None:
        values = _enum_values(field.enum_type)
        return {"enum": [n for n, _, _ in values] + [number for _, number, _ in values]}
    message = field.message_type
    if message is None:
        return dict(_SCALARS[field.type])
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    _define(message, defs)
    return {"$ref": f"#/$defs/{message.full_name}"}


def _field_schema(field: FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    if _is_map(field):
        value = cast(Descriptor, field.message_type).fields_by_name["value"]
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": _single_schema(value, defs),
        }
    elif field.is_repeated:
        schema = {"type": "array", "items": _single_schema(field, defs)}
    else:
        schema = _single_schema(field, defs)
    doc = field_doc(field)
    if field.enum_type is not None:
        doc = f"{doc}\n{_enum_doc(field.enum_type)}".strip()
    if doc:
        schema["description"] = doc.replace("\n", " ")
    if doc.startswith("Output only"):
        schema["readOnly"] = True
    return schema


def _oneof_rules(message: Descriptor) -> list[dict[str, Any]]:
    """At most one field of each oneof, whichever way each is spelled."""
    rules = []
    for oneof in message.oneofs:
        if len(oneof.fields) < 2:
            continue  # proto3 `optional`: no choice to constrain
        for a, b in combinations(oneof.fields, 2):
            for name_a in {a.name, a.json_name}:
                for name_b in {b.name, b.json_name}:
                    rules.append({"not": {"required": [name_a, name_b]}})
    return rules


def _object_schema(message: Descriptor, defs: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required = []
    for field in message.fields:
        properties[field.name] = _field_schema(field, defs)
        if field.json_name != field.name:
            properties[field.json_name] = {
                **properties[field.name],
                "description": f"The lowerCamelCase spelling of `{field.name}`.",
            }
        if field_doc(field).startswith("Required"):
            required.append(field.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    doc = comments().get(message.full_name, "")
    if doc:
        schema["description"] = doc.replace("\n", " ")
    schema["additionalProperties"] = False
    if required:
        schema["required"] = required
    rules = _oneof_rules(message)
    if rules:
        schema["allOf"] = rules
    return schema


def _define(message: Descriptor, defs: dict[str, Any]) -> None:
    if message.full_name in defs:
        return
    defs[message.full_name] = {}  # placeholder: recursive messages refer to it
    defs[message.full_name] = _object_schema(message, defs)


# ----------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Kind:
    """A resource file kind: its message, the command group that applies it, an example."""

    name: str
    command: str
    message: type[Message]
    example: Message
    usage: str


KINDS: dict[str, Kind] = {
    "endpoint": Kind(
        "endpoint",
        "endpoints",
        pb.Endpoint,
        pb.Endpoint(
            description="fraud scoring: 90/10 A/B split by user, the next candidate shadowed",
            sticky_key=pb.StickyKey(source=pb.StickyKey.METADATA, name="x-user-id"),
            variants=[
                pb.Variant(
                    name="champion",
                    model="models/fraud",
                    selector=pb.VersionSelector(alias="champion"),
                    weight=90,
                ),
                pb.Variant(
                    name="challenger",
                    model="models/fraud",
                    selector=pb.VersionSelector(version=3),
                    weight=10,
                ),
            ],
            shadows=[
                pb.Shadow(
                    name="candidate",
                    model="models/fraud",
                    selector=pb.VersionSelector(alias="candidate"),
                    sample_rate=0.1,
                )
            ],
            fallback="champion",
            labels={"team": "risk"},
            audit=pb.AuditPolicy(sample_rate=0.01, redact_inputs=["ssn"]),
        ),
        "modelhub endpoints apply fraud endpoint.json",
    ),
    "deployment": Kind(
        "deployment",
        "deployments",
        pb.Deployment,
        pb.Deployment(
            model="models/fraud",
            versions=[pb.VersionSelector(alias="champion"), pb.VersionSelector(version=3)],
            instance_count=1,
            device=types_pb2.AUTO,
            batching=types_pb2.BatchingConfig(
                max_batch_size=64,
                max_queue_delay_us=2000,
                max_queue_size=1024,
                priority_levels=2,
                default_timeout_us=500_000,
            ),
            runtime=types_pb2.RuntimeConfig(
                intra_op_threads=2, inter_op_threads=1, graph_optimization="all"
            ),
            labels={"team": "risk"},
        ),
        "modelhub deployments apply fraud deployment.json --wait",
    ),
}


def schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a `kind` file."""
    defs: dict[str, Any] = {}
    descriptor = kind.message.DESCRIPTOR
    root = _object_schema(cast(Descriptor, descriptor), defs)
    defs.pop(descriptor.full_name, None)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": f"ModelHub {kind.name} file ({descriptor.full_name})",
        "description": (
            f"{root.get('description', '')} Read by `{kind.usage}`: protobuf JSON, field "
            "names as here (or lowerCamelCase), // and /* */ comments allowed."
        ).strip(),
        **{k: v for k, v in root.items() if k != "description"},
        "$defs": defs,
    }


# ---------------------------------------------------------------------------- example


def _comment_lines(text: str, pad: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines():
        lines += textwrap.wrap(paragraph, 92 - len(pad), break_on_hyphens=False) or [""]
    return [f"{pad}// {line}".rstrip() for line in lines]


def _annotation(field: FieldDescriptor) -> str:
    """A field's comment, with what its type adds: the enum's values, the message's own
    comment, the choice a oneof makes."""
    doc = field_doc(field)
    if field.enum_type is not None:
        doc = f"{doc}\n{_enum_doc(field.enum_type)}"
    elif field.message_type is not None and not _is_map(field):
        doc = f"{doc}\n{comments().get(field.message_type.full_name, '')}"
    oneof = field.containing_oneof
    if oneof is not None and len(oneof.fields) > 1:
        doc = f"{doc}\nAt most one of: {', '.join(f.name for f in oneof.fields)}."
    return doc.strip()


def _render(value: Any, message: Descriptor | None, depth: int, annotate: bool) -> list[str]:
    """Lines of `value` as indented JSON; the first line unindented (it follows a key)."""
    pad, end = "  " * (depth + 1), "  " * depth
    if isinstance(value, list) and message is not None and value:
        body: list[str] = []
        for i, item in enumerate(value):
            lines = _render(item, message, depth + 1, annotate and i == 0)
            lines[0] = pad + lines[0]
            lines[-1] += "," if i < len(value) - 1 else ""
            body += lines
        return ["[", *body, f"{end}]"]
    if not isinstance(value, dict) or message is None:
        return [json.dumps(value, ensure_ascii=False)]
    body = []
    for i, (key, child) in enumerate(value.items()):
        field = message.fields_by_name[key]
        if annotate:
            body += _comment_lines(_annotation(field), pad)
        nested = field.message_type
        if nested is not None and (_is_map(field) or nested.full_name in _WELL_KNOWN):
            nested = None
        lines = _render(child, nested, depth + 1, annotate)
        lines[0] = f"{pad}{json.dumps(key)}: {lines[0]}"
        lines[-1] += "," if i < len(value) - 1 else ""
        body += lines
    return ["{", *body, f"{end}}}"]


def example(kind: Kind, annotated: bool = True) -> str:
    """An example `kind` file: JSON with every field explained in a `//` comment above it
    (`annotated`), or plain JSON."""
    data = message_dict(kind.example)
    descriptor = kind.message.DESCRIPTOR
    if not annotated:
        return json.dumps(data, indent=2, ensure_ascii=False)
    header = [
        f"// An example {kind.name} file ({descriptor.full_name}), for:",
        f"//   {kind.usage}",
        *_comment_lines(comments().get(descriptor.full_name, ""), ""),
        "// JSON with // comments. Its JSON Schema:",
        f"//   modelhub {kind.command} example --schema",
    ]
    return "\n".join([*header, *_render(data, cast(Descriptor, descriptor), 0, True)])
