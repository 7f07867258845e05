"""The registry copy resolves selectors like the registry does, and the routing table
built from it is complete and consistent."""

from __future__ import annotations

import logging

import pytest

from modelhub.router.bucketing import TOTAL
from modelhub.router.table import (
    DeploymentSpec,
    RegistryState,
    Selector,
    ShadowSpec,
    Target,
    empty_table,
)
from tests.unit.router.helpers import endpoint, state, table


def test_resolve_by_number_alias_and_latest() -> None:
    s = RegistryState()
    for number, ready in ((1, True), (2, True), (3, False)):
        s.put_version("m", number, ready)
    s.put_alias("m", "champion", 1)
    s.put_alias("m", "archived", 3)
    assert s.resolve("m", Selector(version=2)) == 2
    assert s.resolve("m", Selector(version=3)) == 0  # not READY
    assert s.resolve("m", Selector(version=9)) == 0  # unknown
    assert s.resolve("m", Selector(alias="champion")) == 1
    assert s.resolve("m", Selector(alias="archived")) == 0
    assert s.resolve("m", Selector(alias="missing")) == 0
    assert s.resolve("m", Selector()) == 2  # newest READY, not 3
    assert s.resolve("m", Selector(alias="latest")) == 2
    assert s.resolve("other", Selector()) == 0
    assert s.ready_versions("m") == [2, 1]


def test_selector_descriptions() -> None:
    assert Selector(version=3).describe() == "version 3"
    assert Selector(alias="champion").describe() == "alias champion"
    assert Selector(alias="latest").describe() == "latest"
    assert Selector().describe() == "latest"


def test_deleting_a_model_forgets_its_versions_and_aliases() -> None:
    s = state()
    s.put_alias("m", "champion", 1)
    s.delete_model("m")
    assert s.resolve("m", Selector()) == 0
    assert "m" not in s.models and "m" not in s.aliases


def test_deployed_resolves_each_deployments_selectors() -> None:
    s = state(versions={"m": [1, 2, 3], "n": [1]})
    s.put_alias("m", "champion", 2)
    s.put_deployment(DeploymentSpec("d", "m", (Selector(alias="champion"), Selector())))
    s.put_deployment(DeploymentSpec("gone", "n", (Selector(version=9),)))
    assert s.deployed() == {("m", 2), ("m", 3)}
    s.delete_deployment("d")
    assert s.deployed() == set()


def test_table_resolves_variants_integer_ranges_and_fallback() -> None:
    s = state(endpoint((90, 10), fallback="v0"))
    t = table(s)
    route = t.endpoints["e"]
    assert route.name == "endpoints/e" and route.salt == "salt-1"
    assert [v.version for v in route.variants] == [1, 2]
    assert [(v.range.lower, v.range.upper) for v in route.variants] == [
        (0, 9000),
        (9000, TOTAL),
    ]
    assert route.ranges.weights == [9000, 1000]
    assert route.fallback is route.variants[0]
    assert route.pick(8999) is route.variants[0] and route.pick(9000) is route.variants[1]
    assert t.synced and t.revision == 10


def test_target_names_endpoint_variant_model_version_and_pool() -> None:
    t = table(state(endpoint(pools=(("a:1", "b:1"), ()))))
    first, second = (v.target for v in t.endpoints["e"].variants)
    assert first is not None and second is not None
    assert (first.endpoint, first.variant, first.model, first.version) == (
        "endpoints/e",
        "v0",
        "m",
        1,
    )
    assert first.pool == ("a:1", "b:1")
    assert second.pool == ()  # the default pool
    assert repr(second) == "Target('endpoints/e', 'v1', models/m@2)"


def test_unresolved_variant_has_no_target() -> None:
    t = table(state(endpoint(versions=(1, 9))))
    variant = t.endpoints["e"].variants[1]
    assert variant.target is None and variant.version == 0
    assert not variant.deployed
    assert t.endpoints["e"].fallback is None


def test_unknown_fallback_name_means_no_fallback() -> None:
    t = table(state(endpoint(fallback="nope")))
    assert t.endpoints["e"].fallback is None


def test_endpoint_without_positive_weight_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    s = state(endpoint((0, 0), name="dead"), endpoint(name="alive"))
    with caplog.at_level(logging.WARNING, logger="modelhub.router.table"):
        t = table(s)
    assert set(t.endpoints) == {"alive"}
    assert "endpoints/dead not routable" in caplog.text


def test_model_default_is_champion_else_latest() -> None:
    s = state(versions={"m": [1, 2, 3], "n": [1, 2]})
    s.put_alias("m", "champion", 2)
    s.put_alias("m", "old", 9)  # not a READY version: not listed
    t = table(s)
    assert (t.models["m"].default, t.models["m"].default_selector) == (2, "alias champion")
    assert t.models["m"].aliases == {"champion": 2}
    assert t.models["m"].ready == frozenset({1, 2, 3})
    assert (t.models["n"].default, t.models["n"].default_selector) == (2, "latest")
    # Configurable: no default alias means always the newest READY version.
    assert table(s, default_alias="").models["m"].default == 3


def test_deployed_flag_follows_deployments() -> None:
    s = state(endpoint())
    s.put_deployment(DeploymentSpec("d", "m", (Selector(version=2),)))
    route = table(s).endpoints["e"]
    assert [v.deployed for v in route.variants] == [False, True]


def test_choose_is_asked_only_about_deployed_versions_and_decides_the_target() -> None:
    asked: list[tuple[str, str, str, int, tuple[str, ...]]] = []

    def hold_on_one(
        endpoint_name: str, variant: str, model: str, version: int, pool: tuple[str, ...]
    ) -> tuple[str, int]:
        asked.append((endpoint_name, variant, model, version, pool))
        return model, 1

    s = state(endpoint(pools=((), ("p:1",))))
    s.put_deployment(DeploymentSpec("d", "m", (Selector(version=2),)))
    route = table(s, choose=hold_on_one).endpoints["e"]
    assert asked == [("endpoints/e", "v1", "m", 2, ("p:1",))]
    # The variant resolves to 2, but routes to the version the chooser kept.
    held = route.variants[1].target
    assert held is not None and (held.model, held.version, held.pool) == ("m", 1, ("p:1",))
    assert route.variants[0].target is not None and route.variants[0].target.version == 1


def test_active_versions_are_what_the_table_routes_to() -> None:
    s = state(endpoint(versions=(3, 9)), endpoint((1,), name="f"))
    assert table(s).active_versions() == {
        ("endpoints/e", "v0"): ("m", 3),
        ("endpoints/f", "v0"): ("m", 1),
    }


def test_shadows_resolve_and_do_not_count_as_variants() -> None:
    shadows = (
        ShadowSpec("s", "m", Selector(version=3), 1.0, ("sh:1",)),
        ShadowSpec("missing", "m", Selector(version=99), 1.0),
    )
    route = table(state(endpoint(shadows=shadows))).endpoints["e"]
    found, missing = route.shadows
    assert found.version == 3
    assert isinstance(found.target, Target) and found.target.pool == ("sh:1",)
    assert (found.target.endpoint, found.target.variant) == ("endpoints/e", "s")
    assert missing.version == 0 and missing.target is None
    assert [v.spec.name for v in route.variants] == ["v0", "v1"]


def test_empty_table_routes_nothing_and_is_not_synced() -> None:
    t = empty_table()
    assert not t.synced and t.revision == 0 and not t.endpoints and not t.models
    assert t.active_versions() == {}
