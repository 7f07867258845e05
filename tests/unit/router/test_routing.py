"""Routing decisions: endpoints by policy, plain model names by version, and the errors a
client can act on."""

from __future__ import annotations

import random

import pytest

from modelhub.common.errors import InvalidArgumentError, NotFoundError, UnavailableError
from modelhub.router.bucketing import Ranges, bucket
from modelhub.router.routing import Router
from modelhub.router.stats import RouterCounters
from modelhub.router.table import (
    KeySource,
    Selector,
    ShadowSpec,
    StickyKey,
    empty_table,
)
from tests.unit.router.helpers import backend_registry, endpoint, state, table


def make_router(*endpoints, versions=None, champion: int | None = None) -> Router:  # type: ignore[no-untyped-def]
    s = state(*endpoints, versions=versions)
    if champion is not None:
        s.put_alias("m", "champion", champion)
    counters = RouterCounters()
    return Router(table(s, counters=counters), counters, random.Random(1))


def keyed(value: str | None):  # type: ignore[no-untyped-def]
    return lambda _sticky: value


def test_endpoint_routes_by_key_like_the_ranges() -> None:
    router = make_router(endpoint((70, 30)))
    ranges = Ranges([70, 30])
    for i in range(500):
        decision = router.route("e", "", keyed(f"user-{i}"))
        expected = ranges.pick(bucket("salt-1", f"user-{i}"))
        assert decision.target.variant == f"v{expected}"
        assert decision.target.version == expected + 1
        assert decision.key == f"user-{i}"


def test_key_source_is_asked_for_the_endpoint_key() -> None:
    asked: list[StickyKey] = []

    def key_of(sticky: StickyKey) -> str:
        asked.append(sticky)
        return "42"

    router = make_router(endpoint(key=StickyKey(KeySource.PARAMETER, "user")))
    router.route("e", "", key_of)
    assert asked == [StickyKey(KeySource.PARAMETER, "user")]


def test_unkeyed_requests_pick_at_random_and_are_counted() -> None:
    router = make_router(endpoint((50, 50)))
    picks = [router.route("e", "", keyed(None)).target.variant for _ in range(2000)]
    assert 0.45 <= picks.count("v0") / len(picks) <= 0.55
    unkeyed = sum(c.unkeyed for c in router.counters.routes())
    assert unkeyed == 2000


def test_endpoint_without_sticky_key_never_asks_for_one() -> None:
    router = make_router(endpoint(key=None))

    def key_of(_sticky: StickyKey) -> str:
        raise AssertionError("no key source configured")

    assert router.route("e", "", key_of).key == ""


def test_unresolved_variant_goes_to_the_fallback_or_fails_unavailable() -> None:
    with_fallback = make_router(endpoint((0, 100), versions=(1, 9), fallback="v0"))
    decision = with_fallback.route("e", "", keyed("k"))
    assert decision.target.variant == "v0"
    assert decision.fallback is None
    without = make_router(endpoint((0, 100), versions=(1, 9)))
    with pytest.raises(UnavailableError, match="resolves to no READY version") as caught:
        without.route("e", "", keyed("k"))
    assert caught.value.reason == "VARIANT_UNRESOLVED"


def test_fallback_is_offered_unless_it_is_the_chosen_variant() -> None:
    router = make_router(endpoint((50, 50), fallback="v0"))
    for i in range(100):
        decision = router.route("e", "", keyed(str(i)))
        if decision.target.variant == "v0":
            assert decision.fallback is None
        else:
            assert decision.fallback is not None and decision.fallback.variant == "v0"


def test_plain_model_default_explicit_version_and_alias() -> None:
    router = make_router(champion=2)
    assert router.route("m", "", keyed(None)).target.version == 2
    assert router.route("m", "3", keyed(None)).target.version == 3
    assert router.route("models/m", "1", keyed(None)).target.version == 1
    assert router.route("m", "champion", keyed(None)).target.version == 2
    target = router.route("m", "", keyed(None)).target
    assert (target.endpoint, target.variant) == ("", "")
    # Without a champion, the newest READY version.
    assert make_router().route("m", "", keyed(None)).target.version == 3


def test_name_that_is_endpoint_and_model() -> None:
    router = make_router(endpoint(name="m"))
    assert router.route("m", "", keyed("k")).endpoint is not None
    assert router.route("m", "1", keyed("k")).endpoint is None  # a version names the model
    assert router.route("endpoints/m", "", keyed("k")).endpoint is not None


def test_not_found_and_invalid_names() -> None:
    router = make_router(endpoint())
    with pytest.raises(NotFoundError, match="no endpoint or model named 'nope'"):
        router.route("nope", "", keyed(None))
    assert router.counters.not_found == 1
    with pytest.raises(NotFoundError, match="no READY version 7"):
        router.route("m", "7", keyed(None))
    with pytest.raises(NotFoundError, match="no alias 'beta'"):
        router.route("m", "beta", keyed(None))
    with pytest.raises(InvalidArgumentError, match="is an endpoint"):
        router.route("e", "2", keyed(None))
    with pytest.raises(InvalidArgumentError, match="required"):
        router.route("", "", keyed(None))
    with pytest.raises(InvalidArgumentError, match="model_name"):
        router.route("deployments/x", "", keyed(None))
    with pytest.raises(InvalidArgumentError, match="leave model_version empty"):
        router.route("endpoints/e", "1", keyed(None))


def test_not_synced_router_is_unavailable() -> None:
    router = Router(empty_table(backend_registry()), RouterCounters())
    with pytest.raises(UnavailableError) as caught:
        router.route("m", "", keyed(None))
    assert caught.value.reason == "ROUTING_TABLE_NOT_SYNCED"


def test_shadow_sampling_is_decided_per_key() -> None:
    shadow = ShadowSpec("s", "m", Selector(version=3), 0.25)
    router = make_router(endpoint(shadows=(shadow,)))
    first = [bool(router.route("e", "", keyed(f"u{i}")).shadows) for i in range(2000)]
    again = [bool(router.route("e", "", keyed(f"u{i}")).shadows) for i in range(2000)]
    assert first == again  # a user is always or never mirrored
    assert 0.22 <= sum(first) / len(first) <= 0.28


def test_shadow_at_full_and_zero_rate() -> None:
    full = ShadowSpec("full", "m", Selector(version=3), 1.0)
    none = ShadowSpec("none", "m", Selector(version=3), 0.0)
    missing = ShadowSpec("missing", "m", Selector(version=99), 1.0)
    router = make_router(endpoint(shadows=(full, none, missing)))
    for i in range(200):
        names = [s.spec.name for s in router.route("e", "", keyed(str(i))).shadows]
        assert names == ["full"]


def test_swap_replaces_the_table_for_later_requests() -> None:
    router = make_router(endpoint((100, 0)))
    assert router.route("e", "", keyed("k")).target.variant == "v0"
    router.swap(table(state(endpoint((0, 100)))))
    assert router.route("e", "", keyed("k")).target.variant == "v1"


def test_explain_says_why() -> None:
    router = make_router(endpoint((50, 50), fallback="v0"))
    explanation = router.explain("endpoints/e", "42")
    u = bucket("salt-1", "42")
    assert explanation.bucket == u
    assert explanation.variant is not None
    assert explanation.variant.spec.name == ("v0" if u < 0.5 else "v1")
    assert f"{u:.6f}" in explanation.text and explanation.variant.spec.name in explanation.text
    unkeyed = router.explain("e", "")
    assert unkeyed.variant is None and "random" in unkeyed.text
    with pytest.raises(NotFoundError):
        router.explain("endpoints/nope", "42")
