"""Registry watch events (read through the contract's one view, `registry_view`) become
state changes; routing tables and explanations convert faithfully into
`modelhub.router.v1` messages."""

from __future__ import annotations

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common import registry_view
from modelhub.router import convert
from modelhub.router.bucketing import TOTAL, bucket
from modelhub.router.routing import Router
from modelhub.router.table import KeySource, RegistryState, Selector, StickyKey
from tests.unit.router.helpers import CANARY_POOL, DEFAULT_POOL, representative_state, table

PUT, DELETE = rpb.WatchEvent.PUT, rpb.WatchEvent.DELETE


def test_apply_events_of_every_kind() -> None:
    state = RegistryState()
    events = [
        rpb.WatchEvent(type=PUT, revision=1, kind=rpb.MODEL, name="models/m", model=rpb.Model()),
        rpb.WatchEvent(
            type=PUT,
            revision=2,
            kind=rpb.MODEL_VERSION,
            name="models/m/versions/1",
            version=rpb.ModelVersion(version=1, status=rpb.ModelVersion.READY),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=3,
            kind=rpb.MODEL_VERSION,
            name="models/m/versions/2",
            version=rpb.ModelVersion(version=2, status=rpb.ModelVersion.ARCHIVED),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=4,
            kind=rpb.ALIAS,
            name="models/m/aliases/champion",
            alias=rpb.Alias(alias="champion", version=1),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=5,
            kind=rpb.ENDPOINT,
            name="endpoints/e",
            endpoint=rpb.Endpoint(
                name="endpoints/e",
                salt="s",
                sticky_key=rpb.StickyKey(source=rpb.StickyKey.METADATA, name="X-User-Id"),
                variants=[
                    rpb.Variant(
                        name="a",
                        model="models/m",
                        selector=rpb.VersionSelector(alias="champion"),
                        weight=90,
                        pool=["h:1"],
                    ),
                    rpb.Variant(name="b", model="models/m", weight=10),
                ],
                shadows=[
                    rpb.Shadow(
                        name="s",
                        model="models/m",
                        selector=rpb.VersionSelector(version=1),
                        sample_rate=0.5,
                    )
                ],
                fallback="a",
            ),
        ),
        rpb.WatchEvent(
            type=PUT,
            revision=6,
            kind=rpb.DEPLOYMENT,
            name="deployments/d",
            deployment=rpb.Deployment(name="deployments/d", model="models/m"),
        ),
    ]
    assert all(state.apply(registry_view.event_from_pb(e)) for e in events)
    assert state.versions == {"m": {1: True, 2: False}}
    assert state.aliases == {"m": {"champion": 1}}
    endpoint = state.endpoints["e"]
    # Metadata keys are lowercase on the wire.
    assert endpoint.sticky_key == StickyKey(KeySource.METADATA, "x-user-id")
    assert [v.selector for v in endpoint.variants] == [Selector(alias="champion"), Selector()]
    assert endpoint.variants[0].pool == ("h:1",)
    assert endpoint.shadows[0].sample_rate == 0.5 and endpoint.fallback == "a"
    assert state.deployments["d"].selectors == (Selector(),)

    deletes = [
        rpb.WatchEvent(type=DELETE, kind=rpb.ALIAS, name="models/m/aliases/champion"),
        rpb.WatchEvent(type=DELETE, kind=rpb.MODEL_VERSION, name="models/m/versions/1"),
        rpb.WatchEvent(type=DELETE, kind=rpb.ENDPOINT, name="endpoints/e"),
        rpb.WatchEvent(type=DELETE, kind=rpb.DEPLOYMENT, name="deployments/d"),
    ]
    assert all(state.apply(registry_view.event_from_pb(e)) for e in deletes)
    assert state.aliases == {"m": {}} and state.versions == {"m": {2: False}}
    assert not state.endpoints and not state.deployments
    progress = rpb.WatchEvent(type=rpb.WatchEvent.PROGRESS, revision=9)
    assert not state.apply(registry_view.event_from_pb(progress))


def test_selectors() -> None:
    from_pb = registry_view.selector_from_pb
    assert from_pb(rpb.VersionSelector(version=3)) == Selector(version=3)
    assert from_pb(rpb.VersionSelector(alias="a")) == Selector(alias="a")
    assert from_pb(rpb.VersionSelector()) == Selector()


def test_parameter_key_keeps_its_case_and_an_empty_key_is_no_key() -> None:
    by_parameter = registry_view.endpoint_from_pb(
        rpb.Endpoint(
            name="endpoints/e",
            sticky_key=rpb.StickyKey(source=rpb.StickyKey.PARAMETER, name="UserId"),
            variants=[rpb.Variant(name="a", model="models/m", weight=1)],
        )
    )
    assert by_parameter.sticky_key == StickyKey(KeySource.PARAMETER, "UserId")
    unnamed = registry_view.endpoint_from_pb(
        rpb.Endpoint(
            name="endpoints/e",
            sticky_key=rpb.StickyKey(source=rpb.StickyKey.METADATA, name=""),
            variants=[rpb.Variant(name="a", model="models/m", weight=1)],
        )
    )
    assert unnamed.sticky_key is None


def test_routing_table_to_pb() -> None:
    t = table(representative_state())
    message = convert.table_to_pb(t, DEFAULT_POOL)
    assert message.revision == 42 and message.synced
    assert [e.name for e in message.endpoints] == [
        "endpoints/checkout",
        "endpoints/open",
        "endpoints/rescued",
        "endpoints/search",
    ]
    assert [b.address for b in message.default_backends] == list(DEFAULT_POOL)
    checkout = message.endpoints[0]
    assert checkout.sticky_key == "metadata:x-user-id" and checkout.fallback == "stable"
    stable, canary = checkout.variants
    assert (stable.model, stable.version, stable.selector) == ("models/fraud", 2, "alias champion")
    assert (stable.bucket_lower, stable.bucket_upper, stable.buckets) == (0, 9000, TOTAL)
    assert (stable.lower, stable.upper) == (0.0, 0.9)
    assert stable.deployed and not canary.deployed
    assert (canary.bucket_lower, canary.bucket_upper, canary.weight) == (9000, TOTAL, 10)
    assert [b.address for b in canary.backends] == list(CANARY_POOL)
    assert [(s.name, s.version, s.sample_rate) for s in checkout.shadows] == [
        ("next", 5, 0.1),
        ("ghost", 0, 0.5),
        ("off", 4, 0.0),
    ]
    search = message.endpoints[3]
    assert search.sticky_key == "parameter:user"
    assert [v.version for v in search.variants] == [1, 0, 2]
    models = {m.name: m for m in message.models}
    assert models["models/fraud"].default_version == 2
    assert models["models/fraud"].default_selector == "alias champion"
    assert list(models["models/fraud"].ready_versions) == [3, 2, 1]
    assert models["models/ranker"].default_selector == "latest"


def test_explanation_to_pb() -> None:
    router = Router(table(representative_state()))
    response = convert.explanation_to_pb(router.explain("endpoints/checkout", "user-7"))
    u = bucket("checkout-salt", "user-7")
    assert (response.bucket_index, response.buckets) == (u, TOTAL)
    assert response.bucket == u / TOTAL
    assert response.variant.name == ("stable" if u < 9000 else "canary")
    assert response.sticky_key == "metadata:x-user-id" and response.fallback == "stable"
    assert response.endpoint == "endpoints/checkout" and response.key == "user-7"
    assert response.explanation
    unkeyed = convert.explanation_to_pb(router.explain("open", ""))
    assert not unkeyed.HasField("variant") and unkeyed.sticky_key == ""
