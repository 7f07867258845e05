"""`ExplainRoute`: the router explains a key with the same bucket function and ranges as
Envoy routes by, over the table it last wrote."""

from __future__ import annotations

import pytest

from modelhub.common.errors import InvalidArgumentError, NotFoundError
from modelhub.router import bucketing
from modelhub.router.bucketing import Ranges, bucket, sample_bucket, threshold
from modelhub.router.routing import Router, mirrored
from modelhub.router.table import EndpointSpec, Selector, ShadowSpec, VariantSpec, empty_table
from tests.unit.router.helpers import BY_USER, SALT, endpoint, state, table


def make_router(*endpoints, versions=None, champion: int | None = None) -> Router:  # type: ignore[no-untyped-def]
    s = state(*endpoints, versions=versions)
    if champion is not None:
        s.put_alias("m", "champion", champion)
    return Router(table(s))


def test_explain_picks_like_the_ranges() -> None:
    router = make_router(endpoint((70, 30)))
    ranges = Ranges([70, 30])
    for i in range(500):
        key = f"user-{i}"
        explanation = router.explain("endpoints/e", key)
        u = bucket(SALT, key)
        assert explanation.bucket == u
        assert explanation.variant is not None
        assert explanation.variant.spec.name == f"v{ranges.pick(u)}"
        assert explanation.key == key and explanation.endpoint.name == "endpoints/e"


def test_explain_says_why() -> None:
    router = make_router(endpoint((50, 50)))
    explanation = router.explain("e", "42")  # the prefix is optional
    u = bucket(SALT, "42")
    variant = explanation.variant
    assert variant is not None
    assert variant.spec.name == ("v0" if u < 5000 else "v1")
    assert f"bucket {u} of {bucketing.TOTAL}" in explanation.text
    assert f"[{variant.range.lower}, {variant.range.upper})" in explanation.text
    assert f"variant {variant.spec.name!r}" in explanation.text
    assert "version" in explanation.text and "no sticky key" not in explanation.text


def test_explain_names_the_resolved_version_of_an_alias() -> None:
    spec = EndpointSpec(
        id="e",
        variants=(VariantSpec("champ", "m", Selector(alias="champion"), 1),),
        sticky_key=BY_USER,
        salt=SALT,
    )
    s = state(spec)
    s.put_alias("m", "champion", 1)
    text = Router(table(s)).explain("e", "k").text
    assert "variant 'champ' (models/m alias champion = version 1)" in text
    # A pinned version is named as it is.
    assert "(models/m version 2)" in make_router(endpoint((0, 1))).explain("e", "k").text


def test_unkeyed_explanation_and_endpoint_without_sticky_key() -> None:
    router = make_router(endpoint(), endpoint(key=None, name="open"))
    unkeyed = router.explain("endpoints/e", "")
    assert unkeyed.variant is None and unkeyed.bucket == 0 and "random" in unkeyed.text
    note = router.explain("open", "k").text
    assert "no sticky key" in note


def test_unresolved_variant_explains_the_fallback() -> None:
    router = make_router(endpoint((0, 100), versions=(1, 9), fallback="v0"))
    explanation = router.explain("e", "k")
    assert explanation.variant is not None and explanation.variant.spec.name == "v1"
    assert "unresolved" in explanation.text
    assert "fallback 'v0' serves" in explanation.text
    without = make_router(endpoint((0, 100), versions=(1, 9)))
    assert "fallback" not in without.explain("e", "k").text


def test_mirrored_to_is_decided_per_key() -> None:
    shadows = (
        ShadowSpec("quarter", "m", Selector(version=3), 0.25),
        ShadowSpec("full", "m", Selector(version=3), 1.0),
        ShadowSpec("none", "m", Selector(version=3), 0.0),
        ShadowSpec("missing", "m", Selector(version=99), 1.0),
    )
    router = make_router(endpoint(shadows=shadows))
    picks = []
    for i in range(2000):
        key = f"u{i}"
        names = router.explain("e", key).mirrored_to
        expected = sample_bucket(SALT, "quarter", key) < threshold(0.25)
        assert names == (["quarter", "full"] if expected else ["full"])
        picks.append(expected)
    assert 0.22 <= sum(picks) / len(picks) <= 0.28
    route = router.table.endpoints["e"]
    assert not mirrored(route, route.shadows[3], "u1")  # resolves to nothing


def test_not_found_and_invalid_names() -> None:
    router = make_router(endpoint())
    with pytest.raises(NotFoundError, match="no endpoint named endpoints/nope"):
        router.explain("endpoints/nope", "42")
    with pytest.raises(InvalidArgumentError, match="required"):
        router.explain("", "42")
    with pytest.raises(InvalidArgumentError, match="required"):
        router.explain("endpoints/", "42")
    with pytest.raises(NotFoundError):
        Router(empty_table()).explain("e", "42")


def test_swap_replaces_the_table_for_later_explanations() -> None:
    router = make_router(endpoint((100, 0)))
    assert router.explain("e", "k").variant.spec.name == "v0"  # type: ignore[union-attr]
    new = table(state(endpoint((0, 100))))
    router.swap(new)
    assert router.table is new
    assert router.explain("e", "k").variant.spec.name == "v1"  # type: ignore[union-attr]


def test_mirrored_to_lists_only_the_shadows_envoy_mirrors() -> None:
    from modelhub.router.xds import MAX_SHADOWS

    shadows = tuple(ShadowSpec(f"s{i}", "m", Selector(version=3), 1.0) for i in range(10))
    router = make_router(endpoint(shadows=shadows))
    assert router.explain("e", "k").mirrored_to == [f"s{i}" for i in range(MAX_SHADOWS)]
