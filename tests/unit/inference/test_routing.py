"""Routing headers (docs/data-plane.md) → `Route`, model references, served labels, and
the monitor events built from them."""

from __future__ import annotations

import random

import numpy as np
import pytest

from modelhub.common.errors import InvalidArgumentError, NotFoundError
from modelhub.common.events import Event
from modelhub.inference.reporting import RequestReporter, first_row
from modelhub.inference.routing import (
    DIRECT,
    Route,
    model_reference,
    parse_route,
    served_labels,
)


def test_no_headers_is_a_direct_call() -> None:
    assert parse_route({}) is DIRECT
    assert not parse_route({"x-request-id": "r1"}).routed
    assert parse_route({"x-request-id": "r1"}).request_id == "r1"


def test_routed_request() -> None:
    route = parse_route(
        {
            "x-modelhub-endpoint": "endpoints/fraud",
            "x-modelhub-variant": "challenger",
            "x-modelhub-target": "fraud:7",
            "x-modelhub-fallback": "safe=fraud:3",
            "x-envoy-attempt-count": "1",
            "x-modelhub-mirrored": "1",
            "x-modelhub-key-hash": "abc",
            "x-request-id": "req-1",
        }
    )
    assert route == Route(
        endpoint="endpoints/fraud",
        variant="challenger",
        model="fraud",
        version="7",
        mirrored=True,
        key_hash="abc",
        request_id="req-1",
    )
    assert route.routed


def test_fallback_only_on_retry() -> None:
    headers = {
        "x-modelhub-endpoint": "endpoints/fraud",
        "x-modelhub-variant": "challenger",
        "x-modelhub-target": "models/fraud:7",
        "x-modelhub-fallback": "safe=fraud:3",
    }
    assert parse_route(headers).version == "7"
    retried = parse_route({**headers, "x-envoy-attempt-count": "2"})
    assert (retried.variant, retried.model, retried.version, retried.fallback) == (
        "safe",
        "fraud",
        "3",
        True,
    )


def test_shadow_and_bare_endpoint_name() -> None:
    route = parse_route({"x-modelhub-shadow": "1", "x-modelhub-endpoint": "fraud"})
    assert route.shadow and route.endpoint == "endpoints/fraud"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-modelhub-target": "fraud"},
        {"x-modelhub-target": ":3"},
        {
            "x-modelhub-target": "fraud:1",
            "x-modelhub-fallback": "fraud:3",
            "x-envoy-attempt-count": "2",
        },
    ],
)
def test_malformed_headers(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_route(headers)


def test_model_reference() -> None:
    assert model_reference("fraud", "", DIRECT) == ("fraud", "")
    assert model_reference("models/fraud", "2", DIRECT) == ("fraud", "2")
    assert model_reference("shop", "9", Route(model="fraud", version="7")) == ("fraud", "7")
    with pytest.raises(NotFoundError, match="no endpoint or model named 'endpoints/shop'"):
        model_reference("endpoints/shop", "", DIRECT)


@pytest.mark.parametrize("attempt", ["²", "١٢", "9" * 5000])
def test_an_attempt_count_int_cannot_read_is_a_first_attempt(attempt: str) -> None:
    # str.isdigit() takes these; int() refuses them (found by tests/fuzz: INTERNAL before).
    route = parse_route({"x-modelhub-fallback": "a=fraud:3", "x-envoy-attempt-count": attempt})
    assert not route.fallback


@pytest.mark.parametrize("version", ["²", "1e3", "-1", "9" * 19, "Champion", "a b", "x" * 64])
def test_a_version_reference_is_a_number_or_an_alias(version: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        model_reference("fraud", version, DIRECT)
    assert info.value.violations[0].field == "model_version"
    with pytest.raises(InvalidArgumentError) as info:
        model_reference("shop", "", Route(model="fraud", version=version))
    assert info.value.violations[0].field == "x-modelhub-target"
    for good in ("", "7", "champion", "latest"):
        assert model_reference("fraud", good, DIRECT) == ("fraud", good)


def test_served_labels() -> None:
    assert served_labels(DIRECT, "fraud", 2) == [
        ("modelhub.model", "models/fraud"),
        ("modelhub.version", "2"),
    ]
    routed = Route(endpoint="endpoints/shop", variant="champion", model="fraud", version="2")
    assert [name for name, _ in served_labels(routed, "fraud", 2)] == [
        "modelhub.endpoint",
        "modelhub.variant",
        "modelhub.model",
        "modelhub.version",
    ]


class _Pipeline:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_first_row_is_bounded_and_numeric_only() -> None:
    assert first_row(np.arange(200, dtype=np.float32).reshape(2, 100), 64) == [
        float(i) for i in range(64)
    ]
    assert first_row(np.array(["a"], dtype=object), 8) == []


def test_reporter_events() -> None:
    pipeline = _Pipeline()
    reporter = RequestReporter(
        pipeline,  # type: ignore[arg-type]
        sample_rate=0.0,
        max_values=4,
        rng=random.Random(0),
    )
    x = np.ones((3, 8), np.float32)
    y = np.arange(12, dtype=np.float32).reshape(3, 4)
    mirrored = Route(endpoint="endpoints/shop", variant="champion", mirrored=True, key_hash="k")
    reporter.report(mirrored, "r1", 100.0, 0.01, "fraud", 1, 0, x, y)
    reporter.report(
        Route(shadow=True, variant="v2", request_id="r1"), "", 100.0, 0.02, "fraud", 2, 0, x, y
    )
    reporter.report(DIRECT, "", 100.0, 0.01, "fraud", 1, 3, x, None)
    primary, shadow, failed = pipeline.events
    assert (primary.endpoint, primary.variant, primary.mirrored, primary.key_hash) == (
        "endpoints/shop",
        "champion",
        True,
        "k",
    )
    assert primary.outputs == [0.0, 1.0, 2.0, 3.0] and primary.rows == 3
    assert primary.features == [] and primary.source == "inference"
    assert (shadow.request_id, shadow.variant, shadow.shadow, shadow.mirrored) == (
        "r1",
        "v2",
        True,
        False,
    )
    assert shadow.outputs == [0.0, 1.0, 2.0, 3.0]
    assert (failed.status_code, failed.outputs, failed.endpoint, failed.variant) == (3, [], "", "")


def test_reporter_samples_first_rows() -> None:
    pipeline = _Pipeline()
    reporter = RequestReporter(pipeline, sample_rate=1.0, max_values=2)  # type: ignore[arg-type]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    reporter.report(DIRECT, "", 1.0, 0.01, "fraud", 1, 0, x, x * 2)
    (event,) = pipeline.events
    assert event.features == [("input[0]", 0.0), ("input[1]", 1.0)]
    assert event.predictions == [("output[0]", 0.0), ("output[1]", 2.0)]
    assert event.outputs == []  # only shadows and mirrored primaries carry them


def test_mirrored_names_the_shadows_it_was_sent_to() -> None:
    route = parse_route({"x-modelhub-mirrored": "next=fraud:3,other=fraud:4"})
    assert route.mirrored and route.mirrored_to == ("next=fraud:3", "other=fraud:4")
    assert parse_route({"x-modelhub-mirrored": "1"}).mirrored_to == ()
    assert parse_route({"x-modelhub-mirrored": "1"}).mirrored
    # Malformed entries are left out (the header only feeds the shadow report).
    odd = parse_route({"x-modelhub-mirrored": "Bad=x:1,next=fraud:v,ok=fraud:2,=m:1"})
    assert odd.mirrored and odd.mirrored_to == ("ok=fraud:2",)
    many = ",".join(f"s{i}=m:1" for i in range(20))
    assert len(parse_route({"x-modelhub-mirrored": many}).mirrored_to) == 8
