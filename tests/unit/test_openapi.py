"""tools/gen_openapi.py: the OpenAPI 3.1 document of Envoy's HTTP/JSON API, built from the real
descriptor set (deploy/envoy/modelhub.pb, `make proto`) and checked against google.api.http's
rules and the proto3 JSON mapping as the transcoder is configured."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf.descriptor_pb2 import (
    DescriptorProto,
    FieldDescriptorProto,
    FileDescriptorProto,
    FileDescriptorSet,
)

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gen_openapi.py"
DESCRIPTOR = ROOT / "deploy" / "envoy" / "modelhub.pb"
ENVOY_TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml.tmpl"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_openapi", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load()


@pytest.fixture(scope="module")
def fds() -> FileDescriptorSet:
    if not DESCRIPTOR.exists():
        pytest.skip("deploy/envoy/modelhub.pb is a build output: run `make proto`")
    return FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())


@pytest.fixture(scope="module")
def doc(fds: FileDescriptorSet) -> dict[str, Any]:
    return gen.build_openapi(fds)


def _schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _params(op: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in doc["paths"].values() for verb, op in item.items() if verb in METHODS]


def test_every_http_rule_and_binding_is_one_operation(
    fds: FileDescriptorSet, doc: dict[str, Any]
) -> None:
    expected: set[str] = set()
    for file in fds.file:
        for service in file.service:
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule = method.options.Extensions[annotations_pb2.http]
                    base = f"{service.name}_{method.name}"
                    expected.add(base)
                    expected.update(
                        f"{base}_{n}" for n in range(2, len(rule.additional_bindings) + 2)
                    )
    ids = [op["operationId"] for op in _operations(doc)]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert "RegistryService_UploadModelVersion" not in ids  # client stream, no HTTP rule
    assert {t["name"] for t in doc["tags"]} >= {
        "RegistryService",
        "MonitorService",
        "InferenceRest",
    }
    assert all(len(op["tags"]) == 1 for op in _operations(doc))


def test_registry_get_by_resource_name_has_one_parameter_per_segment(doc: dict[str, Any]) -> None:
    # GET /v1/{name=models/*/versions/*}: `name` spans segments, so it becomes two path
    # parameters (no escaped '/'); the rest of GetModelVersionRequest is the query string.
    op = doc["paths"]["/v1/models/{model}/versions/{version}"]["get"]
    assert op["operationId"] == "RegistryService_GetModelVersion"
    path = _params(op, "path")
    assert list(path) == ["model", "version"]
    for param in path.values():
        assert param["required"] is True
        assert param["schema"] == {"type": "string", "pattern": "^[^/]+$"}
        assert "models/{model}/versions/{version}" in param["description"]
    assert set(_params(op, "query")) == {"view"}
    view = _resolve(doc, _params(op, "query")["view"]["schema"]["$ref"])
    assert view["type"] == "string" and {"BASIC", "FULL"} <= set(view["enum"])
    assert "requestBody" not in op
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/modelhub.registry.v1.ModelVersion"
    }
    # The additional binding GET /v1/{name=models/*}:resolve.
    resolve = doc["paths"]["/v1/models/{model}:resolve"]["get"]
    assert resolve["operationId"] == "RegistryService_GetModelVersion_2"
    assert list(_params(resolve, "path")) == ["model"]
    # Simple variables keep the field's name.
    audit = doc["paths"]["/v1/audit/records/{request_id}"]["get"]
    assert list(_params(audit, "path")) == ["request_id"]


def test_64_bit_integers_are_strings_and_32_bit_are_numbers(doc: dict[str, Any]) -> None:
    model = _schema(doc, "modelhub.registry.v1.Model")["properties"]
    assert model["latest_version"]["type"] == "string"
    assert model["latest_version"]["format"] == "int64"
    stats = _schema(doc, "modelhub.monitor.v1.Stats")["properties"]
    assert stats["requests"]["type"] == "string" and stats["requests"]["format"] == "uint64"
    # map<string, uint64>: an object of strings.
    assert stats["status_codes"]["type"] == "object"
    assert stats["status_codes"]["additionalProperties"]["type"] == "string"
    # repeated int64: an array of strings.
    shape = _schema(doc, "modelhub.common.v1.TensorSpec")["properties"]["shape"]
    assert shape["type"] == "array" and shape["items"]["type"] == "string"
    page_size = _params(doc["paths"]["/v1/models"]["get"], "query")["page_size"]
    assert page_size["schema"] == {"type": "integer", "format": "int32"}
    # A double may also be printed as "NaN", "Infinity" or "-Infinity".
    kinds = {branch["type"] for branch in stats["error_rate"]["oneOf"]}
    assert kinds == {"number", "string"}


def test_body_star_is_the_request_without_the_path_fields(doc: dict[str, Any]) -> None:
    # POST /v1/{parent=models/*}/aliases body "*": SetAliasRequest minus `parent`.
    op = doc["paths"]["/v1/models/{model}/aliases"]["post"]
    assert op["operationId"] == "RegistryService_SetAlias"
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"alias", "version"}
    assert body["properties"]["version"]["type"] == "string"  # int64
    assert "parameters" not in op or not _params(op, "query")  # body "*": no query string
    # With no path field the body is the request message itself.
    outcome = doc["paths"]["/v1/router/outcomes"]["post"]
    assert outcome["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/modelhub.router.v1.RecordOutcomeRequest"
    }


def test_named_body_leaves_the_other_fields_in_the_query(doc: dict[str, Any]) -> None:
    # PATCH /v1/{model.name=models/*} body "model": the Model, update_mask in the query.
    op = doc["paths"]["/v1/models/{model}"]["patch"]
    assert op["operationId"] == "RegistryService_UpdateModel"
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/modelhub.registry.v1.Model"}
    assert "`name`" in op["requestBody"]["description"]  # set by the path
    query = _params(op, "query")
    assert set(query) == {"update_mask"}
    assert query["update_mask"]["required"] is True
    mask = _resolve(doc, query["update_mask"]["schema"]["$ref"])
    assert mask["type"] == "string"
    # POST /v1/models body "model": model_id is a query parameter.
    create = doc["paths"]["/v1/models"]["post"]
    assert set(_params(create, "query")) == {"model_id"}
    # GET: every field not in the path, messages expanded into their leaf fields.
    stats = doc["paths"]["/v1/monitor/stats:get"]["get"]
    assert set(_params(stats, "query")) == {
        "key.model",
        "key.version",
        "key.endpoint",
        "key.variant",
        "key.source",
        "window_seconds",
    }
    # DELETE: the same rule.
    delete = doc["paths"]["/v1/models/{model}"]["delete"]
    assert set(_params(delete, "query")) == {"etag"}


def test_http_body_methods_take_and_return_raw_bytes(doc: dict[str, Any]) -> None:
    binary = {"schema": {"type": "string", "format": "binary"}}
    op = doc["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert op["operationId"] == "InferenceRest_ModelInfer"
    assert op["requestBody"]["content"] == {"*/*": binary}
    assert op["responses"]["200"]["content"] == {"*/*": binary}
    # body "body": model_version is a query parameter on the short path, a path one on the long.
    assert set(_params(op, "query")) == {"model_version"}
    versioned = doc["paths"]["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert list(_params(versioned, "path")) == ["model_name", "model_version"]
    assert not _params(versioned, "query")
    # The /v2 routes answer errors as {"error": …}, the /v1 ones as google.rpc.Status.
    assert op["responses"]["default"] == {"$ref": "#/components/responses/RestError"}
    get_model = doc["paths"]["/v1/models/{model}"]["get"]
    assert get_model["responses"]["default"] == {"$ref": "#/components/responses/Error"}
    # An HttpBody request field is never offered as query parameters.
    live = doc["paths"]["/v2/health/live"]["get"]
    assert not any(name.startswith("body") for name in _params(live, "query"))


def test_error_response_is_google_rpc_status(doc: dict[str, Any]) -> None:
    error = doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    status = _resolve(doc, error["$ref"])
    assert set(status["properties"]) == {"code", "message", "details"}
    assert status["properties"]["code"]["type"] == "integer"
    detail = _resolve(doc, status["properties"]["details"]["items"]["$ref"])
    assert detail["required"] == ["@type"]
    rest = doc["components"]["responses"]["RestError"]["content"]["application/json"]["schema"]
    assert _resolve(doc, rest["$ref"])["required"] == ["error"]


def test_well_known_types_use_their_json_forms(doc: dict[str, Any]) -> None:
    model = _schema(doc, "modelhub.registry.v1.Model")["properties"]
    timestamp = _resolve(doc, model["create_time"]["$ref"])
    assert timestamp["type"] == "string" and timestamp["format"] == "date-time"
    data = _schema(doc, "modelhub.monitor.v1.AuditTensor")["properties"]["data"]
    assert _resolve(doc, data["$ref"])["type"] == "array"  # ListValue
    # A Timestamp field of a GET request is one query parameter, not seconds/nanos.
    records = _params(doc["paths"]["/v1/audit/records"]["get"], "query")
    assert "start_time" in records and "start_time.seconds" not in records
    enum = _schema(doc, "modelhub.registry.v1.ModelVersion.Status")
    assert enum["type"] == "string" and "READY" in enum["enum"]


def test_oneofs_and_comments_are_documented(doc: dict[str, Any]) -> None:
    selector = _schema(doc, "modelhub.registry.v1.VersionSelector")
    assert "`selector`" in selector["description"]
    assert "at most one of `version`, `alias`" in selector["properties"]["alias"]["description"]
    model = _schema(doc, "modelhub.registry.v1.Model")
    assert model["description"].startswith("A named model")
    assert model["properties"]["etag"]["description"].startswith("Output only.")
    create = doc["paths"]["/v1/models"]["post"]
    assert create["summary"] == "Creates a model (a named container of versions)."
    registry = next(t for t in doc["tags"] if t["name"] == "RegistryService")
    assert "single source of truth" in registry["description"]


def test_field_names_follow_envoy_print_options(
    fds: FileDescriptorSet, doc: dict[str, Any]
) -> None:
    # The default is what the transcoder prints: proto field names.
    assert re.search(r"preserve_proto_field_names:\s*true", ENVOY_TEMPLATE.read_text())
    props = _schema(doc, "modelhub.registry.v1.Model")["properties"]
    assert "latest_version" in props and "latestVersion" not in props
    camel = gen.build_openapi(fds, json_names=True)
    assert "latestVersion" in _schema(camel, "modelhub.registry.v1.Model")["properties"]
    assert "updateMask" in _params(camel["paths"]["/v1/models/{model}"]["patch"], "query")


def test_every_ref_resolves_and_every_path_parameter_is_declared(doc: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert _resolve(doc, ref) is not None, ref
    for path, item in doc["paths"].items():
        names = re.findall(r"\{([^}]+)\}", path)
        assert "=" not in path and "*" not in path, path
        for verb, op in item.items():
            assert sorted(_params(op, "path")) == sorted(names), (verb, path)


def test_security_is_an_optional_bearer_token(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert {"bearerAuth": []} in doc["security"]
    assert {} in doc["security"]  # anonymous callers, where the server allows them


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    assert doc["openapi"] == "3.1.0"
    validator.validate(json.loads(json.dumps(doc)))


def test_output_is_deterministic_and_the_cli_writes_it(
    fds: FileDescriptorSet, doc: dict[str, Any], tmp_path: Path
) -> None:
    text = gen.render(doc)
    assert text == gen.render(gen.build_openapi(fds))
    assert text.endswith("}\n")
    keys = list(json.loads(text)["paths"])
    assert keys == sorted(keys)
    out = tmp_path / "openapi.json"
    assert gen.main(["--descriptor", str(DESCRIPTOR), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == text
    assert gen.main(["--descriptor", str(tmp_path / "missing.pb"), "--out", str(out)]) == 1


def _streaming_fds() -> FileDescriptorSet:
    """A small service: a server stream with a multi-segment variable, a oneof, a client stream."""
    F = FieldDescriptorProto
    event = DescriptorProto(name="Event")
    event.oneof_decl.add(name="payload")
    event.field.add(
        name="text", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, oneof_index=0
    )
    event.field.add(name="blob", number=2, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL, oneof_index=0)
    request = DescriptorProto(name="WatchRequest")
    request.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    request.field.add(name="since", number=2, type=F.TYPE_UINT64, label=F.LABEL_OPTIONAL)
    file = FileDescriptorProto(name="demo.proto", package="demo.v1", syntax="proto3")
    file.message_type.extend([event, request])
    service = file.service.add(name="Demo")
    watch = service.method.add(
        name="Watch", input_type=".demo.v1.WatchRequest", output_type=".demo.v1.Event"
    )
    watch.server_streaming = True
    watch.options.Extensions[annotations_pb2.http].get = "/v1/{name=publishers/*/books/*}/events"
    push = service.method.add(
        name="Push", input_type=".demo.v1.Event", output_type=".demo.v1.WatchRequest"
    )
    push.client_streaming = True
    rule = push.options.Extensions[annotations_pb2.http]
    rule.post, rule.body = "/v1/events", "*"
    return FileDescriptorSet(file=[file])


def test_streams_and_oneofs_of_a_synthetic_service() -> None:
    doc = gen.build_openapi(_streaming_fds())
    watch = doc["paths"]["/v1/publishers/{publisher}/books/{book}/events"]["get"]
    assert watch["operationId"] == "Demo_Watch"
    assert list(_params(watch, "path")) == ["publisher", "book"]
    assert set(_params(watch, "query")) == {"since"}
    ok = watch["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/demo.v1.Event"},
    }
    assert "JSON array" in ok["description"]
    push = doc["paths"]["/v1/events"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"]["type"] == "array"
    event = doc["components"]["schemas"]["demo.v1.Event"]
    assert "`payload`" in event["description"]
    assert event["properties"]["blob"]["contentEncoding"] == "base64"
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(json.dumps(doc)))
