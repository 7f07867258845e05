"""The registry copy resolves selectors like the registry does, and the routing table
built from it is complete and consistent."""

from __future__ import annotations

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.router.stats import RouterCounters
from modelhub.router.table import DeploymentSpec, RegistryState, Selector, ShadowSpec
from tests.unit.router.helpers import backend_registry, endpoint, state, table


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


def test_deleting_a_model_forgets_its_versions_and_aliases() -> None:
    s = state()
    s.put_alias("m", "champion", 1)
    s.delete_model("m")
    assert s.resolve("m", Selector()) == 0
    assert "m" not in s.models


def test_table_resolves_variants_ranges_and_fallback() -> None:
    s = state(endpoint((90, 10), fallback="v0"))
    t = table(s)
    route = t.endpoints["e"]
    assert route.name == "endpoints/e"
    assert [v.version for v in route.variants] == [1, 2]
    assert [(v.range.lower, v.range.upper) for v in route.variants] == [(0.0, 0.9), (0.9, 1.0)]
    assert route.fallback is route.variants[0]
    assert t.synced and t.revision == 10


def test_target_carries_encoded_suffixes() -> None:
    t = table(state(endpoint()))
    target = t.endpoints["e"].variants[1].target
    assert target is not None
    request = pb.ModelInferRequest.FromString(
        pb.ModelInferRequest(model_name="e").SerializeToString() + target.request_suffix
    )
    assert (request.model_name, request.model_version) == ("m", "2")
    response = pb.ModelInferResponse.FromString(target.response_suffix)
    assert {k: v.string_param for k, v in response.parameters.items()} == {
        "modelhub.variant": "v1",
        "modelhub.model": "models/m",
        "modelhub.version": "2",
        "modelhub.endpoint": "endpoints/e",
    }
    assert dict(target.trailers)["modelhub-variant"] == "v1"


def test_unresolved_variant_has_no_target() -> None:
    t = table(state(endpoint(versions=(1, 9))))
    assert t.endpoints["e"].variants[1].target is None
    assert t.endpoints["e"].variants[1].version == 0


def test_model_default_is_champion_else_latest() -> None:
    s = state(versions={"m": [1, 2, 3], "n": [1, 2]})
    s.put_alias("m", "champion", 2)
    t = table(s)
    assert (t.models["m"].default, t.models["m"].default_selector) == (2, "alias champion")
    assert (t.models["n"].default, t.models["n"].default_selector) == (3 - 1, "latest")
    # Configurable: no default alias means always the newest READY version.
    t = table(s, default_alias="")
    assert t.models["m"].default == 3


def test_deployed_flag_follows_deployments() -> None:
    s = state(endpoint())
    s.put_deployment(DeploymentSpec("d", "m", (Selector(version=2),)))
    route = table(s).endpoints["e"]
    assert [v.deployed for v in route.variants] == [False, True]


def test_pools_and_counters_survive_rebuilds() -> None:
    backends = backend_registry()
    counters = RouterCounters()
    s = state(endpoint(pools=(("a:1", "b:1"), ())))
    first = table(s, backends, counters)
    first_target = first.endpoints["e"].variants[0].target
    assert first_target is not None
    first_target.counters.requests += 5
    second = table(s, backends, counters)
    second_target = second.endpoints["e"].variants[0].target
    assert second_target is not None
    assert second_target.pool is first_target.pool
    assert second_target.counters.requests == 5
    assert second.endpoints["e"].variants[1].target.pool is backends.default_pool  # type: ignore[union-attr]


def test_shadows_resolve_and_do_not_count_as_variants() -> None:
    counters = RouterCounters()
    s = state(endpoint(shadows=(ShadowSpec("s", "m", Selector(version=3), 1.0),)))
    route = table(s, counters=counters).endpoints["e"]
    assert route.shadows[0].version == 3
    assert {c.variant for c in counters.routes() if c.endpoint} == {"v0", "v1"}
