"""Generate the OpenAPI 3.1 document of ModelHub's HTTP/JSON API from Envoy's descriptor set.

Envoy's gRPC-JSON transcoder serves every RPC that carries a `google.api.http` rule; this
reads the same descriptor set (`deploy/envoy/modelhub.pb`, built by `make proto`, with
comments) and describes what the transcoder accepts and prints:

- paths and methods from each rule and its `additional_bindings`, following HttpRule: a
  variable `{name=models/*/versions/*}` becomes `models/{model}/versions/{version}` (one
  OpenAPI parameter per `*` segment, so clients never have to send an escaped `/`), fields
  not bound by the path go to the query string when the rule has no body (message fields
  expanded as `key.model`), body `*` is the request without the path fields, a named body
  is that field, the rest of the request again in the query string;
- schemas in the proto3 JSON mapping as configured in `deploy/envoy/envoy.yaml.tmpl`
  (`print_options.preserve_proto_field_names`: proto field names; `--json-names` for
  lowerCamelCase), 64-bit integers as strings, enums as names, well-known types in their
  JSON forms, `google.api.HttpBody` as a raw body of any content type;
- descriptions from the proto comments, one tag per service, bearer authentication,
  google.rpc.Status errors (`{"error": …}` on the Open Inference Protocol's /v2 routes).

Run: `python tools/gen_openapi.py [--descriptor PATH] [--out PATH]`. Imports nothing from
`modelhub`: only google.protobuf and googleapis-common-protos.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from google.api import annotations_pb2, http_pb2
from google.protobuf import any_pb2
from google.protobuf.descriptor_pb2 import (
    DescriptorProto,
    EnumDescriptorProto,
    FieldDescriptorProto,
    FileDescriptorProto,
    FileDescriptorSet,
    MethodDescriptorProto,
)
from google.rpc import status_pb2

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DESCRIPTOR = ROOT / "deploy" / "envoy" / "modelhub.pb"
DEFAULT_OUT = ROOT / "deploy" / "envoy" / "openapi.json"

Json = dict[str, Any]
F = FieldDescriptorProto
HTTP_BODY = "google.api.HttpBody"
# The Open Inference Protocol's REST routes: their errors are `{"error": "…"}`, rewritten by
# the `modelhub.rest_errors` Lua filter (deploy/envoy/rest_errors.lua).
OIP_REST_PREFIX = "/v2"
# source_code_info path components (descriptor.proto field numbers).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ONEOF, _VALUE, _METHOD = 2, 3, 4, 8, 2, 2
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")

_INT64 = {F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64}
_UINT64 = {F.TYPE_UINT64, F.TYPE_FIXED64}
_INT32 = {F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32}
_UINT32 = {F.TYPE_UINT32, F.TYPE_FIXED32}
_WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_BINARY: Json = {"type": "string", "format": "binary"}
# Well-known types whose JSON form is a single string: usable as query parameters.
_STRING_WKTS = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
}
_WKT_SCHEMAS: dict[str, Json] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339, UTC (`Z`), with 0, 3, 6 or 9 fractional digits.",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": 'Seconds with up to 9 fractional digits and an `s` suffix: "1.5s".',
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths: `display_name,threshold` (the "
        "lowerCamelCase `displayName` of the JSON mapping is accepted too).",
    },
    "google.protobuf.Struct": {
        "type": "object",
        "additionalProperties": True,
        "description": "Any JSON object.",
    },
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}, "description": "Any JSON array."},
    "google.protobuf.Empty": {"type": "object", "description": "Always `{}`."},
    "google.protobuf.Any": {
        "type": "object",
        "required": ["@type"],
        "properties": {"@type": {"type": "string", "description": "`type.googleapis.com/<name>`."}},
        "additionalProperties": True,
        "description": "A message of the type named by `@type`: its JSON fields next to `@type` "
        "(a well-known type's JSON form goes in `value`).",
    },
}
_OPAQUE_IN_QUERY = {
    HTTP_BODY,
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Any",
    "google.protobuf.Empty",
}
_STATUS_HTTP = (
    "The HTTP status follows the gRPC code: INVALID_ARGUMENT, FAILED_PRECONDITION and "
    "OUT_OF_RANGE 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, "
    "ALREADY_EXISTS and ABORTED 409, RESOURCE_EXHAUSTED 429, CANCELLED 499, UNKNOWN, "
    "INTERNAL and DATA_LOSS 500, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504."
)
_DESCRIPTION = """\
ModelHub's gRPC services as HTTP/JSON through Envoy's gRPC-JSON transcoder, generated from \
the `google.api.http` rules of protos/modelhub/api by tools/gen_openapi.py.

JSON follows the proto3 JSON mapping with the transcoder's print options \
(deploy/envoy/envoy.yaml.tmpl): fields are printed under their {names} (requests may use \
either the proto name or the lowerCamelCase JSON name, in bodies and query parameters); \
every scalar, enum, repeated and map field is printed even at its default value, message \
and `optional` fields only when set; 64-bit integers are strings (requests may send \
numbers); enums are value names (requests may send numbers); bytes are base64. Unknown \
query parameters and unknown paths are refused; unknown fields of a JSON body are ignored. \
A field the path sets must not be repeated in the body: the body's value would win. A \
server-streaming method answers with one JSON array whose messages are written as they \
arrive.

Errors: google.rpc.Status as JSON (`code`, `message`, `details`) on /v1; on the Open \
Inference Protocol's /v2 routes `{{"error": "…"}}` with the same HTTP status.

Authentication: `Authorization: Bearer <token>` where the server has tokens configured; \
without a token the call runs as the server's anonymous role, if it has one.
"""


class _Located(NamedTuple):
    """A message or enum with the file and source path its comments are filed under."""

    proto: DescriptorProto | EnumDescriptorProto
    file: str
    path: tuple[int, ...]


def _clean(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    text = "\n".join(line.rstrip() for line in lines).strip()
    return re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"`\1`", text)  # [Name][pkg.Name] cross-references


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _scalar(kind: int) -> Json:
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        fmt = "double" if kind == F.TYPE_DOUBLE else "float"
        return {
            "oneOf": [
                {"type": "number", "format": fmt},
                {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
            ]
        }
    if kind in _INT64:
        return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    if kind in _UINT64:
        return {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
    if kind in _INT32:
        return {"type": "integer", "format": "int32"}
    if kind in _UINT32:
        return {"type": "integer", "format": "uint32", "minimum": 0}
    if kind == F.TYPE_BOOL:
        return {"type": "boolean"}
    if kind == F.TYPE_BYTES:
        return {"type": "string", "format": "byte", "contentEncoding": "base64"}
    return {"type": "string"}


def _nullable(schema: Json) -> Json:
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"oneOf": [*schema["oneOf"], {"type": "null"}]}


def _binding(rule: http_pb2.HttpRule) -> tuple[str, str]:
    """The HTTP method (lowercase) and path template of one rule."""
    kind = rule.WhichOneof("pattern")
    if kind in _HTTP_METHODS:
        return kind, str(getattr(rule, kind))
    if kind == "custom" and rule.custom.kind.lower() in ("head", "options", "trace"):
        return rule.custom.kind.lower(), rule.custom.path
    raise ValueError(f"HTTP rule without a method OpenAPI can describe: {rule}")


class _PathParam(NamedTuple):
    name: str
    field: str  # the request field path it fills, e.g. `model.name`
    form: str  # the field's form, e.g. `models/{model}`; empty for a plain `{field}`


def _expand(template: str) -> tuple[str, list[_PathParam]]:
    """`/v1/{name=models/*}:resolve` → `/v1/models/{model}:resolve` and its parameters."""
    out: list[str] = []
    params: list[_PathParam] = []
    position = 0
    for match in re.finditer(r"\{([^}=]+)(?:=([^}]*))?\}", template):
        out.append(template[position : match.start()])
        position = match.end()
        field, segments = match.group(1), match.group(2)
        if segments in (None, "*"):
            params.append(_PathParam(field, field, ""))
            out.append("{" + field + "}")
            continue
        pieces: list[str] = []
        names: list[str] = []
        literal = ""
        for segment in segments.split("/"):
            if segment not in ("*", "**"):
                pieces.append(literal := segment)
                continue
            name = _singular(literal) if literal else field.replace(".", "_")
            taken = {p.name for p in params} | set(names)
            name = next(f"{name}{n or ''}" for n in range(99) if f"{name}{n or ''}" not in taken)
            names.append(name)
            pieces.append("{" + name + "}")
        form = "/".join(pieces)
        params.extend(_PathParam(name, field, form) for name in names)
        out.append(form)
    out.append(template[position:])
    return "".join(out), params


class _Builder:
    def __init__(self, fds: FileDescriptorSet, json_names: bool) -> None:
        self.fds = fds
        self.json_names = json_names
        self.types: dict[str, _Located] = {}
        self.comments: dict[tuple[str, tuple[int, ...]], str] = {}
        self.schemas: dict[str, Json] = {}
        self.pending: list[str] = []
        for file in fds.file:
            self._index_file(file)
        # The error body's types, where the set lacks them (Envoy's carries them).
        for module, name in ((status_pb2, "google.rpc.Status"), (any_pb2, "google.protobuf.Any")):
            if name not in self.types:
                extra = FileDescriptorProto()
                module.DESCRIPTOR.CopyToProto(extra)
                self._index_file(extra)

    def _index_file(self, file: FileDescriptorProto) -> None:
        for location in file.source_code_info.location:
            text = location.leading_comments or location.trailing_comments
            if text.strip():
                self.comments[(file.name, tuple(location.path))] = _clean(text)
        prefix = f"{file.package}." if file.package else ""
        for i, message in enumerate(file.message_type):
            self._index_message(message, file.name, prefix, (_MESSAGE, i))
        for i, enum in enumerate(file.enum_type):
            self.types[prefix + enum.name] = _Located(enum, file.name, (_ENUM, i))

    def _index_message(
        self, message: DescriptorProto, file: str, prefix: str, path: tuple[int, ...]
    ) -> None:
        name = prefix + message.name
        self.types[name] = _Located(message, file, path)
        for i, nested in enumerate(message.nested_type):
            self._index_message(nested, file, name + ".", (*path, _NESTED, i))
        for i, enum in enumerate(message.enum_type):
            self.types[f"{name}.{enum.name}"] = _Located(enum, file, (*path, _NESTED_ENUM, i))

    def comment(self, file: str, path: tuple[int, ...]) -> str:
        return self.comments.get((file, path), "")

    def message(self, name: str) -> tuple[DescriptorProto, _Located]:
        located = self.types[name]
        assert isinstance(located.proto, DescriptorProto), name
        return located.proto, located

    def key(self, field: FieldDescriptorProto) -> str:
        if not self.json_names:
            return field.name
        return field.json_name or re.sub(r"_(.)", lambda m: m.group(1).upper(), field.name)

    # ------------------------------------------------------------------ schemas

    def ref(self, name: str) -> Json:
        if name not in self.schemas and name not in self.pending:
            self.pending.append(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, field: FieldDescriptorProto, *, element: bool = False) -> Json:
        """The JSON schema of a field (of one element, with `element`)."""
        if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP, F.TYPE_ENUM):
            type_name = field.type_name.lstrip(".")
            entry = self.types[type_name].proto
            if isinstance(entry, DescriptorProto) and entry.options.map_entry and not element:
                return {"type": "object", "additionalProperties": self.field_schema(entry.field[1])}
            schema = self.ref(type_name)
        else:
            schema = _scalar(field.type)
        if field.label == F.LABEL_REPEATED and not element:
            return {"type": "array", "items": schema}
        return schema

    def build_schema(self, name: str) -> Json:
        located = self.types[name]
        proto = located.proto
        description = self.comment(located.file, located.path)
        if isinstance(proto, EnumDescriptorProto):
            listed = "\n".join(
                f"- `{value.name}`: {text}"
                for i, value in enumerate(proto.value)
                if (text := self.comment(located.file, (*located.path, _VALUE, i)))
            )
            text = "\n\n".join(t for t in (description, listed) if t)
            return {"type": "string", "enum": [v.name for v in proto.value]} | (
                {"description": text} if text else {}
            )
        if name in _WKT_SCHEMAS:
            return dict(_WKT_SCHEMAS[name])
        if name in _WRAPPERS:
            return _nullable(_scalar(proto.field[0].type)) | {
                "description": f"{name}: the wrapped value, or null."
            }
        groups: dict[int, list[str]] = {}
        for field in proto.field:
            if field.HasField("oneof_index") and not field.proto3_optional:
                groups.setdefault(field.oneof_index, []).append(f"`{self.key(field)}`")
        properties: Json = {}
        for i, field in enumerate(proto.field):
            schema = self.field_schema(field)
            text = self.comment(located.file, (*located.path, _FIELD, i))
            if field.HasField("oneof_index") and field.oneof_index in groups:
                note = f"Oneof `{proto.oneof_decl[field.oneof_index].name}`: at most one of "
                note += ", ".join(groups[field.oneof_index]) + " is set."
                text = "\n\n".join(t for t in (text, note) if t)
            if text:
                schema = schema | {"description": text}
            if field.options.deprecated:
                schema["deprecated"] = True
            properties[self.key(field)] = schema
        if groups:
            lines = ["At most one field of each oneof:"]
            for index, group in sorted(groups.items()):
                text = self.comment(located.file, (*located.path, _ONEOF, index))
                line = f"- `{proto.oneof_decl[index].name}` ({', '.join(group)})"
                lines.append(f"{line}: {text}" if text else line)
            description = "\n\n".join(t for t in (description, "\n".join(lines)) if t)
        schema = {"type": "object", "properties": properties}
        return schema | ({"description": description} if description else {})

    # --------------------------------------------------------------- parameters

    def query_params(
        self,
        message: str,
        bound: set[tuple[str, ...]],
        skip: str,
        prefix: tuple[str, ...] = (),
        stack: tuple[str, ...] = (),
        names: tuple[str, ...] = (),
    ) -> Iterator[Json]:
        """Query parameters for every leaf field of `message` not bound by path or body."""
        proto, located = self.message(message)
        for i, field in enumerate(proto.field):
            path = (*prefix, field.name)
            if path in bound or (not prefix and field.name == skip):
                continue
            type_name = field.type_name.lstrip(".")
            repeated = field.label == F.LABEL_REPEATED
            is_message = field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP)
            text = self.comment(located.file, (*located.path, _FIELD, i))
            if is_message and type_name not in _STRING_WKTS | _WRAPPERS:
                # Repeated messages and maps cannot be query parameters; a singular message
                # is its leaf fields (`key.model`); JSON-only types are left out.
                seen = (*stack, message)
                if not (repeated or type_name in _OPAQUE_IN_QUERY or type_name in seen):
                    nested = (*names, self.key(field))
                    yield from self.query_params(type_name, bound, skip, path, seen, nested)
                continue
            if is_message and repeated:
                continue
            param: Json = {
                "name": ".".join((*names, self.key(field))),
                "in": "query",
                "schema": self.field_schema(field),
            }
            if text:
                param["description"] = text
            if not prefix and text.startswith("Required."):
                param["required"] = True
            if field.options.deprecated:
                param["deprecated"] = True
            yield param

    def resolve(self, message: str, dotted: str) -> tuple[FieldDescriptorProto, str]:
        """The field at a dotted path from `message`, and its comment."""
        *parents, last = dotted.split(".")
        for name in parents:
            parent, _ = self.resolve(message, name)
            message = parent.type_name.lstrip(".")
        proto, located = self.message(message)
        for i, field in enumerate(proto.field):
            if field.name == last:
                return field, self.comment(located.file, (*located.path, _FIELD, i))
        raise ValueError(f"{message} has no field {last!r}")

    def path_params(self, request: str, params: list[_PathParam]) -> list[Json]:
        out: list[Json] = []
        for param in params:
            field, text = self.resolve(request, param.field)
            if field.label == F.LABEL_REPEATED or field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
                raise ValueError(f"{request}.{param.field}: path variables must be scalars")
            if param.form:
                schema: Json = {"type": "string", "pattern": "^[^/]+$"}
                lead = f"`{param.field}` is `{param.form}`."
                text = f"{lead} {text}" if text else lead
            else:
                schema = self.field_schema(field)
            entry: Json = {"name": param.name, "in": "path", "required": True, "schema": schema}
            out.append(entry | ({"description": text} if text else {}))
        return out

    # --------------------------------------------------------------- operations

    def operation(
        self,
        method: MethodDescriptorProto,
        rule: http_pb2.HttpRule,
        params: list[_PathParam],
        template: str,
    ) -> Json:
        request, response = method.input_type.lstrip("."), method.output_type.lstrip(".")
        bound = {tuple(p.field.split(".")) for p in params}
        parameters = self.path_params(request, params)
        raw = False
        schema: Json = {}
        if rule.body == "*":
            raw = request == HTTP_BODY
            schema = _BINARY if raw else self.body_star(request, bound)
        elif rule.body:
            field, _ = self.resolve(request, rule.body)
            raw = field.type_name.lstrip(".") == HTTP_BODY
            schema = _BINARY if raw else self.field_schema(field)
            parameters += self.query_params(request, bound, rule.body)
        else:
            parameters += self.query_params(request, bound, "")
        op: Json = {"parameters": parameters} if parameters else {}
        if rule.body:
            if method.client_streaming:
                schema = {"type": "array", "items": schema}
            body = {("*/*" if raw else "application/json"): {"schema": dict(schema)}}
            text = (
                "The raw body, passed on with its Content-Type (google.api.HttpBody)."
                if raw
                else "The request body."
            )
            inside = sorted(
                ".".join(b[0 if rule.body == "*" else 1 :])
                for b in bound
                if rule.body == "*" or (len(b) > 1 and b[0] == rule.body)
            )
            if inside:
                text += (
                    " The path sets " + ", ".join(f"`{n}`" for n in inside) + ": the same "
                    "field in the body would override the path's value (Envoy's transcoder "
                    "applies the body last), so leave it out."
                )
            if method.client_streaming:
                text += " A client stream: one JSON array of the messages."
            op["requestBody"] = {"content": body, "description": text}
        out, text = response, f"`{response}`."
        if rule.response_body:
            picked, _ = self.resolve(response, rule.response_body)
            out = picked.type_name.lstrip(".")
            text = f"Field `{rule.response_body}` of `{response}`."
        if out == HTTP_BODY:
            content: Json = {"*/*": {"schema": dict(_BINARY)}}
            text = "The body the service wrote, with its content type (google.api.HttpBody)."
        else:
            schema = self.field_schema(picked) if rule.response_body else self.ref(response)
            content = {"application/json": {"schema": schema}}
        if method.server_streaming:
            for media in content.values():
                media["schema"] = {"type": "array", "items": media["schema"]}
            text += (
                " Server stream: Envoy writes one JSON array, each message as it arrives "
                "(`[{…},{…}]`; print_options.stream_newline_delimited is not set)."
                if out != HTTP_BODY
                else " Server stream: the bodies of the messages one after the other."
            )
        oip = template == OIP_REST_PREFIX or template.startswith(OIP_REST_PREFIX + "/")
        error = "RestError" if oip else "Error"
        op["responses"] = {
            "200": {"description": text, "content": content},
            "default": {"$ref": f"#/components/responses/{error}"},
        }
        if method.options.deprecated:
            op["deprecated"] = True
        return op

    def body_star(self, request: str, bound: set[tuple[str, ...]]) -> Json:
        """Body `*`: the request message without the fields the path binds."""
        top = {path[0] for path in bound if len(path) == 1}
        if not top:
            return self.ref(request)
        proto, _ = self.message(request)
        full = self.build_schema(request)
        kept = {self.key(f) for f in proto.field if f.name not in top}
        schema: Json = {
            "type": "object",
            "properties": {k: v for k, v in full["properties"].items() if k in kept},
        }
        text = full.get("description", "")
        note = f"`{request}` without the path's " + ", ".join(f"`{n}`" for n in sorted(top)) + "."
        schema["description"] = f"{text}\n\n{note}" if text else note
        return schema

    def document(self) -> Json:
        paths: dict[str, Json] = {}
        tags: list[Json] = []
        for file in self.fds.file:
            header = self.comment(file.name, (12,)) or self.comment(file.name, (2,))
            for s, service in enumerate(file.service):
                annotated = False
                full = f"{file.package}.{service.name}" if file.package else service.name
                for m, method in enumerate(service.method):
                    if not method.options.HasExtension(annotations_pb2.http):
                        continue
                    annotated = True
                    rule = method.options.Extensions[annotations_pb2.http]
                    text = self.comment(file.name, (_SERVICE, s, _METHOD, m))
                    rules = [rule, *rule.additional_bindings]
                    for n, binding in enumerate(rules, start=1):
                        verb, template = _binding(binding)
                        path, params = _expand(template)
                        op = self.operation(method, binding, params, template)
                        grpc = (
                            f"gRPC: `{full}/{method.name}`; HTTP rule `{verb.upper()} {template}`."
                        )
                        op |= {
                            "operationId": f"{service.name}_{method.name}"
                            + (f"_{n}" if n > 1 else ""),
                            "tags": [service.name],
                            "summary": (
                                re.split(r"(?<=\.)\s", text, maxsplit=1)[0] if text else method.name
                            ),
                            "description": f"{text}\n\n{grpc}" if text else grpc,
                        }
                        if verb in paths.setdefault(path, {}):
                            raise ValueError(f"two rules map to {verb.upper()} {path}")
                        paths[path][verb] = op
                if annotated:
                    text = self.comment(file.name, (_SERVICE, s)) or header
                    tags.append({"name": service.name} | ({"description": text} if text else {}))
        self.ref("google.rpc.Status")
        while self.pending:
            name = self.pending.pop()
            self.schemas[name] = {}  # taken: a message that refers to itself is built once
            self.schemas[name] = self.build_schema(name)
        self.schemas["RestError"] = {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
            "description": "An Open Inference Protocol error (KServe v2 / Triton).",
        }
        names = "lowerCamelCase JSON names" if self.json_names else "proto field names"
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "ModelHub HTTP/JSON API",
                "version": "1.0.0",
                "description": _DESCRIPTION.format(names=names),
            },
            "servers": [{"url": "http://127.0.0.1:8080", "description": "Envoy under `make up`"}],
            "security": [{"bearerAuth": []}, {}],
            "tags": sorted(tags, key=lambda t: str(t["name"])),
            "paths": paths,
            "components": {
                "schemas": self.schemas,
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "`Authorization: Bearer <token>`: a token of the server's "
                        "`MODELHUB_AUTH_TOKENS`. Optional where the server allows anonymous "
                        "callers (with no tokens configured, everyone is an anonymous admin).",
                    }
                },
                "responses": {
                    "Error": {
                        "description": "A gRPC error as google.rpc.Status JSON (the transcoder's "
                        "`convert_grpc_status`). " + _STATUS_HTTP + " The transcoder's own "
                        "refusals (unknown path or query parameter, bad JSON) are plain text.",
                        "content": {
                            "application/json": {"schema": self.ref("google.rpc.Status")},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    "RestError": {
                        "description": '`{"error": "…"}` with the HTTP status of the failure '
                        "(deploy/envoy/rest_errors.lua). " + _STATUS_HTTP,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/RestError"}
                            }
                        },
                    },
                },
            },
        }


def build_openapi(fds: FileDescriptorSet, *, json_names: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every RPC in `fds` that has a `google.api.http` rule.

    `json_names` prints lowerCamelCase JSON names instead of proto field names (Envoy's
    `print_options.preserve_proto_field_names: false`).
    """
    # Parse again with google.api.http registered (a set parsed before its import holds the
    # rules as unknown fields).
    fds = FileDescriptorSet.FromString(fds.SerializeToString())
    return _Builder(fds, json_names).document()


def render(document: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--json-names", action="store_true", help="lowerCamelCase JSON names, not proto names"
    )
    args = parser.parse_args(argv)
    try:
        fds = FileDescriptorSet.FromString(args.descriptor.read_bytes())
        text = render(build_openapi(fds, json_names=args.json_names))
    except (OSError, ValueError) as error:
        print(f"gen_openapi: {error}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
