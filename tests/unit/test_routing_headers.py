"""The routing-header contract (modelhub.common.routing_headers): what the router writes
is what inference and the monitor read, and Envoy's routing filter spells the same names."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhub.common import routing_headers as rh
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import ENDPOINTS, bare_id, qualified_name

ROUTE_FILTER = (
    Path(__file__).resolve().parents[2] / "deploy" / "envoy" / "route_filter" / "modelhub_route.c"
)


def test_targets_round_trip() -> None:
    assert rh.format_target("fraud", 3) == "fraud:3"
    assert rh.parse_target(rh.format_target("fraud", 3)) == ("fraud", "3")
    named = rh.format_named_target("safe", "fraud", 3)
    assert named == "safe=fraud:3"
    assert rh.parse_named_target(named) == ("safe", "fraud", "3")
    # A full model name and surrounding blanks are accepted; the version is not checked here.
    assert rh.parse_target(" models/fraud:champion ") == ("fraud", "champion")


@pytest.mark.parametrize("value", ["fraud", "fraud:", ":3", "models/:3", ""])
def test_a_bad_target_is_refused_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        rh.parse_target(value, rh.HEADER_TARGET)
    assert info.value.violations[0].field == rh.HEADER_TARGET
    assert "must be `{model}:{version}`" in info.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fraud:3", "must be `{variant}={model}:{version}`"),
        ("=fraud:3", "must be `{variant}={model}:{version}`"),
        ("safe=fraud", "must be `{model}:{version}`"),
    ],
)
def test_a_bad_named_target_is_refused(value: str, expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        rh.parse_named_target(value, rh.HEADER_FALLBACK)
    assert expected in info.value.message
    assert info.value.violations[0].field == rh.HEADER_FALLBACK


def test_a_long_bad_value_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        rh.parse_target("x" * 10_000)
    assert len(info.value.message) < 400


def test_the_routing_filter_spells_the_same_names() -> None:
    source = ROUTE_FILTER.read_text()
    for name in (
        rh.HEADER_BUCKET,
        rh.HEADER_MIRRORED,
        rh.HEADER_MIRROR_PREFIX,
        rh.HEADER_MODEL,
        rh.HEADER_ROUTE,
        rh.HEADER_KEY_HASH,
    ):
        assert f'"{name}' in source, name


def test_bare_ids_and_qualified_names() -> None:
    assert bare_id("models/fraud") == bare_id("fraud") == "fraud"
    assert bare_id("endpoints/shop", ENDPOINTS) == "shop"
    assert bare_id("endpoints/shop") == "endpoints/shop"  # not a model name: as it is
    assert qualified_name("fraud") == qualified_name("models/fraud") == "models/fraud"
    assert qualified_name("shop", ENDPOINTS) == "endpoints/shop"
