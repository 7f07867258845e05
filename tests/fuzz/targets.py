"""The fuzz targets: one property per target, shared by the test suite (tests/fuzz, 200
examples each) and the bench (bench/fuzz.py, 10,000 or more each).

A property takes the target's stack (a running server, or None for pure functions) and
one generated example, and returns the `Outcome`; `run_target` runs it under Hypothesis
and, when strict, fails on the first bad outcome (Hypothesis then shrinks it to a minimal
example). Post-conditions of accepted inputs are checked too (VIOLATED when they fail).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
from google.api import httpbody_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common import registry_view
from modelhub.common.dtypes import OIP_TO_NUMPY
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import is_resource_id
from modelhub.inference import convert, rest, routing
from modelhub.registry import convert as registry_convert
from modelhub.registry import names
from modelhub.registry.validation import validate_endpoint
from modelhub.router import xds
from modelhub.router.table import RegistryState, build_table
from tests.fuzz import strategies as fs
from tests.fuzz.harness import (
    INFER,
    MAX_REQUEST_BYTES,
    REGISTRY_MODEL,
    REST_INFER,
    FrontDoorStack,
    InferenceStack,
    Outcome,
    RegistryStack,
    domain_outcome,
    rpc_outcome,
)
from tests.service.inference.oip import outputs_of

A = TypeVar("A")
R = TypeVar("R")

# ------------------------------------------------------------------- tensor decoders


def check_decoders(_: None, example: fs.InferExample) -> Outcome:
    """convert.infer_request → codec (raw, typed, BYTES): only domain errors; an accepted
    request's tensors have the declared shapes and datatypes."""
    request = example.request

    def run() -> None:
        decoded = convert.infer_request(request, MAX_REQUEST_BYTES)
        assert len(decoded.inputs) == len(request.inputs)
        for tensor, message in zip(decoded.inputs, request.inputs, strict=True):
            assert tensor.data.shape == tuple(message.shape), (tensor.data.shape, message.shape)
            assert tensor.data.dtype == OIP_TO_NUMPY[message.datatype]
            if message.datatype == "BYTES":
                assert all(isinstance(item, bytes) for item in tensor.data.reshape(-1))

    return domain_outcome(run)


def check_model_infer(stack: InferenceStack, example: fs.InferExample) -> Outcome:
    """ModelInfer on a real inference server: a clear status, or the right answer."""
    outcome, answer = stack.call(INFER, example.payload, example.metadata)
    if answer is not None:
        return domain_outcome(lambda: _check_answer(example.payload, answer))
    return outcome


def _check_answer(payload: bytes, answer: bytes) -> None:
    """An answer of an `add`-style model (y = x + version, the front door's `m` and the
    inference stack's `add`) holds x + version; any answer has one entry per output."""
    response = pb.ModelInferResponse.FromString(answer)
    raw = len(response.raw_output_contents)
    assert raw in (0, len(response.outputs)), "outputs and their raw contents differ"
    if response.model_name not in ("add", REGISTRY_MODEL):
        return
    outputs = outputs_of(response)
    request = convert.infer_request(pb.ModelInferRequest.FromString(payload), MAX_REQUEST_BYTES)
    (x,) = [tensor.data for tensor in request.inputs]
    with np.errstate(all="ignore"):  # inf + version, NaN: as the model computes them
        expected = x + np.float32(response.model_version)
    np.testing.assert_array_equal(outputs["y"], expected)


# ------------------------------------------------------------- model names from bytes


def check_routing(_: None, example: fs.RouteExample) -> Outcome:
    """What inference reads from Envoy's headers and the message's model name."""

    def run() -> None:
        route = routing.parse_route(example.headers)
        model, version = routing.model_reference(example.name, example.version, route)
        assert isinstance(model, str) and isinstance(version, str)
        stream_route = routing.message_route(route, example.name, example.sequence)
        if route.request_id:
            assert stream_route.request_id == f"{route.request_id}.{example.sequence}"
        routing.served_labels(stream_route, model, 1)

    return domain_outcome(run)


def check_front_door(stack: FrontDoorStack, example: fs.FrontDoorExample) -> Outcome:
    """Any bytes as a gRPC body through the real Envoy (the routing filter): a clear
    status, and Envoy does not crash; an answered ModelInfer is right."""
    outcome, answer = stack.call(
        f"/inference.GRPCInferenceService/{example.method}",
        example.payload,
        example.metadata,
        grpc.Compression.Gzip if example.gzip else None,
    )
    if answer is not None and example.method == "ModelInfer":
        return domain_outcome(lambda: _check_answer(example.payload, answer))
    return outcome


# --------------------------------------------------------------------- resource names


def check_names(_: None, example: fs.NameExample) -> Outcome:
    """Registry name parsing agrees with the one rule (modelhub.common.names) and accepts
    only well-formed names."""
    text = example.text

    def run() -> None:
        accepted = _parsed(lambda t: names.check_id(t, "id", "id"), text) is not None
        assert accepted == is_resource_id(text), f"check_id and is_resource_id disagree on {text!r}"
        for parse_id in (names.model_id, names.endpoint_id, names.deployment_id):
            parsed = _parsed(parse_id, text)
            assert parsed is None or is_resource_id(parsed), parsed
        for parse_ref in (names.parse_version_name, names.parse_reference):
            ref = _parsed(parse_ref, text)
            if ref is not None:
                _well_formed(ref)
        pair = _parsed(names.parse_alias_name, text)
        if pair is not None:
            assert is_resource_id(pair[0]) and is_resource_id(pair[1]), pair
        if _parsed(names.check_sha256, text) is not None:
            assert len(text) == 64 and all(c in "0123456789abcdef" for c in text)
        if _parsed(names.check_tags, example.tags) is not None:
            assert all(tag.isascii() and tag.isprintable() for tag in example.tags)
        if _parsed(names.check_labels, example.labels) is not None:
            assert all(key.isascii() and key.isprintable() for key in example.labels)
        # The last one raises whatever it raises: the outcome counts it.
        names.parse_reference(text)

    return domain_outcome(run)


def _parsed(parse: Callable[[A], R], value: A) -> R | None:
    """`parse(value)`, or None when it refuses the value (INVALID_ARGUMENT)."""
    try:
        return parse(value)
    except InvalidArgumentError:
        return None


def _well_formed(ref: names.VersionRef) -> None:
    assert is_resource_id(ref.model), ref
    if ref.version is not None:
        assert ref.version >= 1 and ref.alias is None, ref
    else:
        assert ref.alias is not None and is_resource_id(ref.alias), ref


# ------------------------------------------------------------------ endpoint policies


def routable(endpoint: rpb.Endpoint) -> None:
    """An accepted endpoint programs the router: it has a route, and Envoy's
    configuration can be built from it."""
    spec = registry_view.endpoint_from_pb(endpoint)
    state = RegistryState()
    for version in (1, 2, 3):
        state.put_version(REGISTRY_MODEL, version, True)
    state.put_alias(REGISTRY_MODEL, "champion", 1)
    state.put_endpoint(spec)
    table = build_table(state, "")
    assert spec.id in table.endpoints, f"accepted endpoint {spec.id!r} is not routable"
    ranges = table.endpoints[spec.id].ranges
    assert sum(ranges.weights) == 10_000 and min(ranges.weights) >= 0, ranges.weights
    xds.snapshot(table, xds.XdsOptions())


def check_endpoint_validation(_: None, example: fs.EndpointExample) -> Outcome:
    """registry convert + validate_endpoint: only domain errors; accepted is routable."""

    def run() -> None:
        endpoint = registry_convert.endpoint_from_pb(example.endpoint_id, example.endpoint)
        validated = validate_endpoint(endpoint)
        routable(registry_convert.endpoint_to_pb(validated))

    return domain_outcome(run)


def check_create_endpoint(stack: RegistryStack, example: fs.EndpointExample) -> Outcome:
    """CreateEndpoint (or UpdateEndpoint of `endpoints/base` with a mask) on a real
    registry: a clear status; an accepted endpoint is routable. Created endpoints are
    deleted again (ids recur; the registry stays small)."""
    stub = stack.stub

    async def call() -> rpb.Endpoint:
        if example.update_mask is None:
            created = await stub.CreateEndpoint(
                rpb.CreateEndpointRequest(
                    endpoint_id=example.endpoint_id, endpoint=example.endpoint
                ),
                timeout=30,
            )
            await stub.DeleteEndpoint(rpb.DeleteEndpointRequest(name=created.name), timeout=30)
            return created
        endpoint = rpb.Endpoint()
        endpoint.CopyFrom(example.endpoint)
        endpoint.name = "endpoints/base"
        request = rpb.UpdateEndpointRequest(endpoint=endpoint)
        request.update_mask.paths.extend(example.update_mask)
        return await stub.UpdateEndpoint(request, timeout=30)

    started = time.monotonic()
    try:
        created = stack.loop.run(call())
    except grpc.aio.AioRpcError as exc:
        return rpc_outcome(exc, started)
    return domain_outcome(lambda: routable(created))


# ------------------------------------------------------------------------- REST bodies


def check_rest_parser(_: None, example: fs.RestExample) -> Outcome:
    """rest.body_bytes + rest.parse_infer: only domain errors; accepted tensors have the
    declared shapes."""

    def run() -> None:
        body = rest.body_bytes(example.body, example.encoding, MAX_REQUEST_BYTES + 4096)
        call = rest.parse_infer(
            body, example.header_length, example.model, example.version, MAX_REQUEST_BYTES
        )
        for tensor in call.request.inputs:
            assert tensor.data.shape == tensor.shape, (tensor.data.shape, tensor.shape)
            assert tensor.data.dtype == OIP_TO_NUMPY[tensor.datatype]

    return domain_outcome(run)


def _header(value: str) -> str | None:
    """`value` as a gRPC client can send it (printable ASCII, trimmed as HTTP trims header
    values), else None."""
    value = value.strip()
    return value if value.isascii() and value.isprintable() else None


def check_rest_infer(stack: InferenceStack, example: fs.RestExample) -> Outcome:
    """The REST servicer (what Envoy's transcoder calls) on a real inference server."""
    metadata = []
    encoding = _header(example.encoding)
    if encoding:
        metadata.append(("content-encoding", encoding))
    if example.header_length is not None:
        length = _header(example.header_length)
        if length:
            metadata.append((rest.HEADER_LENGTH, length))
    outcome, answer = stack.call(REST_INFER, fs.rest_request(example).SerializeToString(), metadata)
    if answer is not None:
        return domain_outcome(lambda: _check_rest_answer(example, answer))
    return outcome


def _check_rest_answer(example: fs.RestExample, answer: bytes) -> None:
    """A JSON answer parses; `add`'s holds y = x + version."""
    body = httpbody_pb2.HttpBody.FromString(answer)
    if body.content_type != "application/json":
        return
    document = json.loads(body.data)
    if document["model_name"] != "add":
        return
    data = rest.body_bytes(example.body, example.encoding, MAX_REQUEST_BYTES + 4096)
    call = rest.parse_infer(data, example.header_length, "add", "", MAX_REQUEST_BYTES)
    (x,) = [tensor.data for tensor in call.request.inputs]
    (y,) = [output["data"] for output in document["outputs"]]
    with np.errstate(all="ignore"):
        expected = x + np.float32(document["model_version"])
    np.testing.assert_array_equal(np.asarray(y, np.float32), expected.ravel())


# ------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any, Any], Outcome]
    # None: a pure function; else the stack it needs ("inference", "registry", "front_door").
    stack: str | None = None

    @property
    def slug(self) -> str:
        """The name as a test id / command-line name: `rest-modelinfer-server`."""
        words = "".join(c if c.isalnum() else " " for c in self.name.lower()).split()
        return "-".join(words)


TARGETS: tuple[Target, ...] = (
    Target("tensor decoders", fs.infer_examples(), check_decoders),
    Target("ModelInfer (server)", fs.infer_examples(), check_model_infer, "inference"),
    Target("routing headers", fs.route_examples(), check_routing),
    Target("Envoy routing filter", fs.front_door_examples(), check_front_door, "front_door"),
    Target("resource names", fs.name_examples(), check_names),
    Target("endpoint validation", fs.endpoint_examples(), check_endpoint_validation),
    Target("CreateEndpoint (server)", fs.endpoint_examples(), check_create_endpoint, "registry"),
    Target("REST parser", fs.rest_examples(), check_rest_parser),
    Target("REST ModelInfer (server)", fs.rest_examples(), check_rest_infer, "inference"),
)
BY_NAME = {target.slug: target for target in TARGETS}


def suite_settings(max_examples: int = 200) -> settings:
    """Stable in CI: derandomized, no example database, no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def bench_settings(max_examples: int) -> settings:
    """Random (a new run explores new inputs), generation only: no shrinking, no replay."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def run_target(
    target: Target,
    stack: object,
    config: settings,
    *,
    strict: bool = True,
    bad: list[tuple[Any, Outcome]] | None = None,
    details: dict[str, str] | None = None,
) -> Counter[str]:
    """Run `target`'s property under `config`: the outcomes by label. Strict: fail (with
    Hypothesis's minimal example) on the first bad outcome; else count them, and keep the
    first few (example, outcome) in `bad`. `details`: the first message of each label."""
    seen: Counter[str] = Counter()

    @config
    @given(target.strategy)
    def property_(example: Any) -> None:
        outcome = target.check(stack, example)
        seen[outcome.label] += 1
        if details is not None:
            details.setdefault(outcome.label, outcome.detail)
        if outcome.bad:
            if bad is not None and len(bad) < 3:
                bad.append((example, outcome))
            if strict:
                raise AssertionError(f"{target.name}: {outcome}")

    property_()
    return seen
