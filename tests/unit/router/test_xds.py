"""Envoy's dynamic configuration from the routing table: the routes and clusters the router
writes (filesystem xDS), checked for what Envoy does with them, validated by Envoy itself,
and written in an order that never leaves a route naming a missing cluster."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelhub.router import envoy, xds
from modelhub.router.bucketing import TOTAL
from modelhub.router.table import EndpointSpec, RoutingTable, Selector, ShadowSpec
from tests.unit.router.helpers import (
    CANARY_POOL,
    DEFAULT_POOL,
    GPU_POOL,
    SHADOW_POOL,
    endpoint,
    representative_state,
    state,
    table,
)

OPTIONS = xds.XdsOptions(default_pool=DEFAULT_POOL, inference_timeout_s=30, retries=3)
STATIC = {
    c["name"]: c for c in envoy.static_clusters(replace(envoy.LOCAL, inference=list(DEFAULT_POOL)))
}


@pytest.fixture(scope="module")
def routing_table() -> RoutingTable:
    return table(representative_state())


@pytest.fixture(scope="module")
def snap(routing_table: RoutingTable) -> xds.Snapshot:
    return xds.snapshot(routing_table, OPTIONS)


# --------------------------------------------------------------------------- helpers


def routes_of(snapshot: xds.Snapshot) -> list[dict[str, Any]]:
    (host,) = snapshot.routes["virtual_hosts"]
    routes: list[dict[str, Any]] = host["routes"]
    return routes


def route(snapshot: xds.Snapshot, endpoint_id: str) -> dict[str, Any]:
    (found,) = [r for r in routes_of(snapshot) if r.get("name") == f"endpoint-{endpoint_id}"]
    return found


def raw_meta(route_: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = route_["metadata"]["filter_metadata"][xds.ROUTE_NAMESPACE]
    return metadata


def meta(route_: dict[str, Any]) -> dict[str, Any]:
    """The routing filter's metadata, its string lists read as the filter reads them:
    shadows `name cluster threshold target`, unresolved ranges `lower upper reason`."""
    metadata = dict(raw_meta(route_))
    if "shadows" in metadata:
        metadata["shadows"] = [
            [name, cluster, int(threshold), target]
            for name, cluster, threshold, target in (s.split(" ") for s in metadata["shadows"])
        ]
    if "unresolved" in metadata:
        metadata["unresolved"] = [
            [int(lower), int(upper), reason]
            for lower, upper, reason in (u.split(" ", 2) for u in metadata["unresolved"])
        ]
    return metadata


def weighted(route_: dict[str, Any]) -> list[dict[str, Any]]:
    spec = route_["route"]["weighted_clusters"]
    assert spec["header_name"] == xds.HEADER_BUCKET
    entries: list[dict[str, Any]] = spec["clusters"]
    return entries


def headers(entry: dict[str, Any]) -> dict[str, str]:
    added = entry.get("request_headers_to_add", [])
    assert all(h["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD" for h in added)
    return {h["header"]["key"]: h["header"]["value"] for h in added}


def all_clusters(snapshot: xds.Snapshot) -> dict[str, dict[str, Any]]:
    return {**STATIC, **{c["name"]: c for c in snapshot.clusters}}


def hosts(cluster: dict[str, Any]) -> tuple[str, ...]:
    assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
    (group,) = cluster["load_assignment"]["endpoints"]
    return tuple(
        f"{e['endpoint']['address']['socket_address']['address']}:"
        f"{e['endpoint']['address']['socket_address']['port_value']}"
        for e in group["lb_endpoints"]
    )


def aggregated(cluster: dict[str, Any]) -> list[str] | None:
    """The clusters an aggregate cluster spans, in priority order (None: not aggregate)."""
    kind = cluster.get("cluster_type")
    if kind is None:
        return None
    assert kind["name"] == "envoy.clusters.aggregate"
    names: list[str] = kind["typed_config"]["clusters"]
    return names


def primary_hosts(snapshot: xds.Snapshot, name: str) -> tuple[str, ...]:
    """The replicas a cluster sends first tries to (following aggregate clusters)."""
    clusters = all_clusters(snapshot)
    cluster = clusters[name]
    while (members := aggregated(cluster)) is not None:
        cluster = clusters[members[0]]
    return hosts(cluster)


def mutations(cluster: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """(removed headers, set headers) of a cluster's upstream header mutation."""
    protocol = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    filters = protocol["http_filters"]
    assert filters[-1]["name"] == "envoy.filters.http.upstream_codec"  # must be last
    (mutation,) = [f for f in filters if f["name"] == "envoy.filters.http.header_mutation"]
    removed, added = [], {}
    for item in mutation["typed_config"]["mutations"]["request_mutations"]:
        if "remove" in item:
            removed.append(item["remove"])
        else:
            assert item["append"]["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
            added[item["append"]["header"]["key"]] = item["append"]["header"]["value"]
    return removed, added


def envoy_pick(entries: list[dict[str, Any]], bucket_value: int) -> dict[str, Any]:
    """Envoy's weighted-cluster choice for a random value from the header: the value modulo
    the total weight, then the cluster whose cumulative range holds it, in list order."""
    total = sum(e["weight"] for e in entries)
    value = bucket_value % total
    lower = 0
    for entry in entries:
        if lower <= value < lower + entry["weight"]:
            return entry
        lower += entry["weight"]
    raise AssertionError("no cluster picked")


# ------------------------------------------------------------------------- snapshot


def test_weighted_clusters_sum_to_total_in_range_order(
    routing_table: RoutingTable, snap: xds.Snapshot
) -> None:
    for endpoint_route in routing_table.endpoints.values():
        entries = weighted(route(snap, endpoint_route.id))
        assert sum(e["weight"] for e in entries) == TOTAL
        assert all(e["weight"] > 0 for e in entries)
        # The cumulative weights are the upper bounds of the non-empty ranges, in order.
        uppers = [v.range.upper for v in endpoint_route.variants if v.range.width]
        cumulative = [sum(e["weight"] for e in entries[: i + 1]) for i in range(len(entries))]
        assert cumulative == uppers


def test_envoy_picks_the_variant_the_ranges_pick(
    routing_table: RoutingTable, snap: xds.Snapshot
) -> None:
    """For every bucket, the weighted cluster Envoy picks carries the variant that
    `EndpointRoute.pick` (and so `ExplainRoute`) names; unresolved ranges are refused by
    the routing filter before Envoy picks."""
    for endpoint_route in routing_table.endpoints.values():
        entries = weighted(route(snap, endpoint_route.id))
        unresolved = meta(route(snap, endpoint_route.id)).get("unresolved", [])
        fallback = endpoint_route.fallback
        for u in range(0, TOTAL, 7):
            variant = endpoint_route.pick(u)
            picked = headers(envoy_pick(entries, u))
            if variant.target is not None:
                assert picked[xds.HEADER_VARIANT] == variant.spec.name
            elif fallback is not None and fallback.target is not None:
                assert picked[xds.HEADER_VARIANT] == fallback.spec.name
            else:
                assert picked == {}
                assert any(lower <= u < upper for lower, upper, _ in unresolved)


def test_sticky_endpoint_with_fallback_canary_and_shadow(snap: xds.Snapshot) -> None:
    checkout = route(snap, "checkout")
    assert checkout["match"] == {
        "prefix": xds.OIP_PREFIX,
        "headers": [
            {"name": "x-modelhub-route", "string_match": {"exact": "endpoint"}},
            {"name": "x-modelhub-model", "string_match": {"exact": "checkout"}},
        ],
    }
    stable, canary = weighted(checkout)
    assert (stable["weight"], canary["weight"]) == (9000, 1000)
    assert headers(stable) == {
        "x-modelhub-endpoint": "endpoints/checkout",
        "x-modelhub-variant": "stable",
        "x-modelhub-target": "fraud:2",
    }
    assert headers(canary) == {
        "x-modelhub-endpoint": "endpoints/checkout",
        "x-modelhub-variant": "canary",
        "x-modelhub-target": "fraud:3",
        "x-modelhub-fallback": "stable=fraud:2",
    }
    # The stable variant runs on the default pool, the canary first on its own replicas.
    assert stable["name"] == xds.DEFAULT_CLUSTER == xds.pool_cluster_name(())
    assert primary_hosts(snap, canary["name"]) == CANARY_POOL
    action = checkout["route"]
    assert action["timeout"] == "30s"
    assert action["retry_policy"]["num_retries"] == 3
    assert "unavailable" in action["retry_policy"]["retry_on"].split(",")
    # One mirror per sampled, resolved shadow: `ghost` resolves to nothing, `off` is at 0.
    assert action["request_mirror_policies"] == [{"cluster_header": "x-modelhub-mirror-0"}]
    assert meta(checkout) == {
        "endpoint": "endpoints/checkout",
        "salt": "checkout-salt",
        "total": TOTAL,
        "key_header": "x-user-id",
        "shadows": [["next", "shadow/checkout/next", 1000, "ranker:5"]],
    }
    assert raw_meta(checkout)["shadows"] == ["next shadow/checkout/next 1000 ranker:5"]


def test_shadow_cluster_turns_the_copy_into_the_shadows_request(snap: xds.Snapshot) -> None:
    clusters = all_clusters(snap)
    (name,) = [s[1] for s in meta(route(snap, "checkout"))["shadows"]]
    shadow = clusters[name]
    assert hosts(shadow) == SHADOW_POOL
    removed, added = mutations(shadow)
    assert set(removed) == {xds.HEADER_FALLBACK, xds.HEADER_MIRRORED}
    assert added == {
        "x-modelhub-endpoint": "endpoints/checkout",
        "x-modelhub-variant": "next",
        "x-modelhub-target": "ranker:5",
        "x-modelhub-shadow": "1",
    }
    # A shadow that resolves to nothing gets no cluster.
    assert not any("ghost" in c for c in snap.cluster_names())


def test_shadow_without_a_pool_mirrors_to_the_default_pool() -> None:
    spec = endpoint(shadows=(ShadowSpec("s", "m", Selector(version=3), 0.5),))
    snapshot = xds.snapshot(table(state(spec)), OPTIONS)
    (shadow,) = [
        c for c in snapshot.clusters if c["name"] == meta(route(snapshot, "e"))["shadows"][0][1]
    ]
    assert hosts(shadow) == DEFAULT_POOL
    assert meta(route(snapshot, "e"))["shadows"][0][2] == 5000


def test_parameter_keyed_endpoint_with_unresolved_variant_and_own_pool(snap: xds.Snapshot) -> None:
    search = route(snap, "search")
    metadata = meta(search)
    assert metadata["key_parameter"] == "user" and "key_header" not in metadata
    assert metadata["salt"] == "search-salt" and "shadows" not in metadata
    ((lower, upper, message),) = metadata["unresolved"]
    assert (lower, upper) == (5000, 8000)
    assert "'gone'" in message and "models/fraud" in message and "version 99" in message
    a, gone, b = weighted(search)
    assert [e["weight"] for e in (a, gone, b)] == [5000, 3000, 2000]
    assert headers(a)[xds.HEADER_VARIANT] == "a" and a["name"] == xds.DEFAULT_CLUSTER
    assert headers(gone) == {}
    assert headers(b) == {
        "x-modelhub-endpoint": "endpoints/search",
        "x-modelhub-variant": "b",
        "x-modelhub-target": "fraud:2",
    }
    assert b["name"] == xds.pool_cluster_name(GPU_POOL)
    assert hosts(all_clusters(snap)[b["name"]]) == GPU_POOL
    assert "request_mirror_policies" not in search["route"]


def test_unkeyed_endpoint(snap: xds.Snapshot) -> None:
    opened = route(snap, "open")
    assert meta(opened) == {"endpoint": "endpoints/open", "salt": "", "total": TOTAL}
    (only,) = weighted(opened)
    assert only["weight"] == TOTAL
    assert headers(only)[xds.HEADER_TARGET] == "ranker:5"


def test_unresolved_variant_with_a_fallback_is_served_by_the_fallback(snap: xds.Snapshot) -> None:
    rescued = route(snap, "rescued")
    assert "unresolved" not in meta(rescued)
    main, missing = weighted(rescued)
    assert (main["weight"], missing["weight"]) == (7000, 3000)
    expected = {
        "x-modelhub-endpoint": "endpoints/rescued",
        "x-modelhub-variant": "main",
        "x-modelhub-target": "fraud:1",
    }
    assert headers(main) == expected and headers(missing) == expected


def test_every_named_cluster_exists(snap: xds.Snapshot) -> None:
    clusters = all_clusters(snap)
    names = [c["name"] for c in snap.clusters]
    assert len(names) == len(set(names)) and names == sorted(names)
    for r in routes_of(snap):
        if "direct_response" in r:
            continue
        action = r["route"]
        if "weighted_clusters" in action:
            for entry in action["weighted_clusters"]["clusters"]:
                assert entry["name"] in clusters, entry["name"]
        else:
            assert action["cluster"] in clusters
    mirrored = [
        s[1] for r in routes_of(snap) if "metadata" in r for s in meta(r).get("shadows", [])
    ]
    assert mirrored and set(mirrored) <= snap.cluster_names()
    for cluster in snap.clusters:
        for member in aggregated(cluster) or []:
            assert member in clusters, member


def test_endpoint_routes_come_before_the_catch_all(snap: xds.Snapshot) -> None:
    routes = routes_of(snap)
    names = [r.get("name", "") for r in routes]
    endpoint_indexes = [i for i, n in enumerate(names) if n.startswith("endpoint-")]
    # Each endpoint has a gRPC route and its REST twin (same decision, REST error bodies).
    assert [names[i] for i in endpoint_indexes] == [
        f"endpoint-{e}{kind}"
        for e in ("checkout", "open", "rescued", "search")
        for kind in ("", "-rest")
    ]
    for i in endpoint_indexes:
        rest = names[i].endswith("-rest")
        assert routes[i]["match"]["prefix"] == (xds.REST_PREFIX if rest else xds.OIP_PREFIX)
        assert ("typed_per_filter_config" in routes[i]) == rest
    for prefix in (xds.OIP_PREFIX, xds.REST_PREFIX):
        (catch_all,) = [i for i, r in enumerate(routes) if r["match"] == {"prefix": prefix}]
        assert max(endpoint_indexes) < catch_all
        assert routes[catch_all]["route"]["cluster"] == xds.DEFAULT_CLUSTER
    # Triton's deployment-wide extensions go to the router, before any endpoint route.
    assert routes[0]["route"]["cluster"] == "router"
    assert "ModelStatistics" in routes[0]["match"]["safe_regex"]["regex"]
    assert snap.routes["name"] == xds.ROUTE_CONFIG


def test_pool_cluster_naming() -> None:
    assert xds.pool_cluster_name(()) == xds.DEFAULT_CLUSTER
    name = xds.pool_cluster_name(GPU_POOL)
    assert re.fullmatch(r"pool-[0-9a-f]{12}", name)
    assert xds.pool_cluster_name(tuple(GPU_POOL)) == name  # a pure function of the pool
    assert xds.pool_cluster_name(CANARY_POOL) != name


def test_a_pool_shared_by_endpoints_is_one_cluster_and_zero_weights_are_left_out() -> None:
    s = state(
        endpoint((100, 0), pools=(GPU_POOL, CANARY_POOL), name="e"),
        endpoint((1, 1), pools=(GPU_POOL, ()), name="f"),
    )
    snapshot = xds.snapshot(table(s), OPTIONS)
    pooled = [c for c in snapshot.clusters if c["name"] == xds.pool_cluster_name(GPU_POOL)]
    assert len(pooled) == 1 and hosts(pooled[0]) == GPU_POOL
    (only,) = weighted(route(snapshot, "e"))
    assert only["weight"] == TOTAL and headers(only)[xds.HEADER_VARIANT] == "v0"


def test_an_ipv6_backend_is_a_socket_address_without_brackets() -> None:
    pool = ("[fd00::2]:9000", "10.0.0.7:9001")
    snapshot = xds.snapshot(table(state(endpoint((100, 0), pools=(pool, ()), name="e"))), OPTIONS)
    (pooled,) = [c for c in snapshot.clusters if c["name"] == xds.pool_cluster_name(pool)]
    (group,) = pooled["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in group["lb_endpoints"]]
    assert addresses == [
        {"address": "fd00::2", "port_value": 9000},
        {"address": "10.0.0.7", "port_value": 9001},
    ]


def test_at_most_max_shadows_are_mirrored() -> None:
    shadows = tuple(ShadowSpec(f"s{i}", "m", Selector(version=3), 1.0) for i in range(10))
    snapshot = xds.snapshot(table(state(endpoint(shadows=shadows))), OPTIONS)
    r = route(snapshot, "e")
    assert len(meta(r)["shadows"]) == xds.MAX_SHADOWS
    assert r["route"]["request_mirror_policies"] == [
        {"cluster_header": f"x-modelhub-mirror-{i}"} for i in range(xds.MAX_SHADOWS)
    ]
    # Envoy drops client-sent copies of exactly these headers before the routing filter runs.
    mirrors = {h for h in envoy.INTERNAL_HEADERS if h.startswith("x-modelhub-mirror-")}
    assert mirrors == {f"x-modelhub-mirror-{i}" for i in range(xds.MAX_SHADOWS)}


def test_empty_table_routes_models_and_services_only() -> None:
    snapshot = xds.snapshot(table(state()), OPTIONS)
    assert snapshot.clusters == []
    assert not any(r.get("name", "").startswith("endpoint-") for r in routes_of(snapshot))
    assert routes_of(snapshot)[0]["route"]["cluster"] == "router"  # Triton's extensions
    assert routes_of(snapshot)[1]["route"]["cluster"] == xds.DEFAULT_CLUSTER


# ------------------------------------------------------------------- Envoy validation


def test_envoy_validates_the_snapshot(snap: xds.Snapshot, tmp_path: Path) -> None:
    """`envoy --mode validate` on a bootstrap holding the snapshot's clusters and routes as
    static resources: unknown fields, bad types and routes naming missing clusters are
    errors here (in the watched xDS files Envoy would only warn and ignore the update).
    The resources are read back from the files `ConfigWriter` writes."""
    if not Path(envoy.envoy_binary()).exists():
        pytest.skip("no envoy binary")
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0)
    assert writer.write(snap)
    written_clusters = yaml.safe_load(writer.clusters_path.read_text())["resources"]
    (written_routes,) = yaml.safe_load(writer.routes_path.read_text())["resources"]
    assert {r.pop("@type") for r in written_clusters} == {xds._CLUSTER_TYPE}
    assert written_routes.pop("@type") == xds._ROUTE_TYPE
    assert written_clusters == snap.clusters and written_routes == snap.routes

    bootstrap = yaml.safe_load(envoy.render(replace(envoy.LOCAL, xds_dir=str(tmp_path / "xds"))))
    bootstrap.pop("dynamic_resources")
    listener = bootstrap["static_resources"]["listeners"][0]
    assert listener["name"] == "ingress"
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["rds"]["route_config_name"] == xds.ROUTE_CONFIG
    del manager["rds"]
    manager["route_config"] = written_routes
    bootstrap["static_resources"]["clusters"] += written_clusters
    config = tmp_path / "validate.yaml"
    config.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    result = envoy.validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------------------------- ConfigWriter


class Recorder:
    """A fake `sleep` recording what Envoy would see on disk at each pause."""

    def __init__(self, writer: xds.ConfigWriter) -> None:
        self.writer = writer
        self.pauses: list[tuple[float, set[str], set[str]]] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append((seconds, cluster_names(self.writer), named_clusters(self.writer)))


def cluster_names(writer: xds.ConfigWriter) -> set[str]:
    if not writer.clusters_path.exists():
        return set()
    return {r["name"] for r in yaml.safe_load(writer.clusters_path.read_text())["resources"]}


def named_clusters(writer: xds.ConfigWriter) -> set[str]:
    """Dynamic clusters the routes on disk name (weighted entries and mirrors)."""
    if not writer.routes_path.exists():
        return set()
    (config,) = yaml.safe_load(writer.routes_path.read_text())["resources"]
    names: set[str] = set()
    for r in config["virtual_hosts"][0]["routes"]:
        for entry in r.get("route", {}).get("weighted_clusters", {}).get("clusters", []):
            names.add(entry["name"])
        if "metadata" in r:
            names |= {s[1] for s in meta(r).get("shadows", [])}
    return names - set(STATIC)


def closure(writer: xds.ConfigWriter, names: set[str]) -> set[str]:
    """`names` plus the clusters aggregate clusters among them span."""
    resources = {
        r["name"]: r for r in yaml.safe_load(writer.clusters_path.read_text())["resources"]
    }
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        if name in resources:
            todo += aggregated(resources[name]) or []
    return out - set(STATIC)


def snapshot_of(*endpoints: EndpointSpec, revision: int = 10) -> xds.Snapshot:
    s = state(*endpoints)
    s.revision = revision
    return xds.snapshot(table(s), OPTIONS)


def test_first_write_clusters_then_routes(tmp_path: Path) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0.25)
    sleep = Recorder(writer)
    snapshot = snapshot_of(endpoint(pools=(GPU_POOL, ())))
    assert writer.write(snapshot, sleep=sleep)
    # One pause, with the clusters on disk and no routes yet.
    ((seconds, on_disk, named),) = sleep.pauses
    assert seconds == 0.25 and on_disk == snapshot.cluster_names() and named == set()
    assert named_clusters(writer) == {xds.pool_cluster_name(GPU_POOL)}
    assert writer.writes == 1 and writer.errors == 0


def test_new_clusters_before_routes_and_old_ones_pruned_after(tmp_path: Path) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0.5)
    old = snapshot_of(endpoint(pools=(GPU_POOL, ())))
    new = snapshot_of(endpoint(pools=(CANARY_POOL, ())), revision=11)
    assert writer.write(old, sleep=lambda _s: None)
    sleep = Recorder(writer)
    assert writer.write(new, sleep=sleep)
    (_, first_disk, first_named), (_, second_disk, second_named) = sleep.pauses
    # Pause 1: both pools' clusters on disk, the old routes still name the old pool.
    assert first_disk == old.cluster_names() | new.cluster_names()
    assert first_named == {xds.pool_cluster_name(GPU_POOL)}
    # Pause 2: the new routes are in place; the old cluster is still there.
    assert second_named == {xds.pool_cluster_name(CANARY_POOL)}
    assert second_disk == first_disk
    # Then the clusters no route names are pruned.
    assert cluster_names(writer) == new.cluster_names()
    assert writer.writes == 2


def test_routes_never_name_a_cluster_missing_from_disk(tmp_path: Path) -> None:
    """At every point Envoy may read the files, each cluster the routes name (and each
    cluster an aggregate among them spans) is on disk."""
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=1)
    checks: list[bool] = []

    def sleep(_seconds: float) -> None:
        checks.append(closure(writer, named_clusters(writer)) <= cluster_names(writer))

    sequence = [
        snapshot_of(endpoint(pools=(GPU_POOL, ()))),
        snapshot_of(endpoint(pools=(CANARY_POOL, ()), fallback="v1"), revision=11),
        snapshot_of(
            endpoint(shadows=(ShadowSpec("s", "m", Selector(version=3), 0.5, SHADOW_POOL),)),
            revision=12,
        ),
        snapshot_of(endpoint(), revision=13),
        snapshot_of(revision=14),
    ]
    for snapshot in sequence:
        writer.write(snapshot, sleep=sleep)
        checks.append(closure(writer, named_clusters(writer)) <= cluster_names(writer))
        assert cluster_names(writer) == snapshot.cluster_names()
    assert checks and all(checks)


def test_unchanged_snapshot_is_not_rewritten(tmp_path: Path) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0.5)
    snapshot = snapshot_of(endpoint(pools=(GPU_POOL, ())))
    assert writer.write(snapshot, sleep=lambda _s: None)
    before = {p: os.stat(p) for p in (writer.clusters_path, writer.routes_path)}
    sleep = Recorder(writer)
    # An equal snapshot built anew (another table revision, same content).
    assert not writer.write(snapshot_of(endpoint(pools=(GPU_POOL, ()))), sleep=sleep)
    assert sleep.pauses == []
    after = {p: os.stat(p) for p in (writer.clusters_path, writer.routes_path)}
    assert {p: (s.st_ino, s.st_mtime_ns) for p, s in before.items()} == {
        p: (s.st_ino, s.st_mtime_ns) for p, s in after.items()
    }
    assert writer.writes == 1


def test_routes_only_change_needs_no_pause(tmp_path: Path) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0.5)
    assert writer.write(snapshot_of(endpoint((50, 50))), sleep=lambda _s: None)
    clusters_before = os.stat(writer.clusters_path).st_ino
    sleep = Recorder(writer)
    assert writer.write(snapshot_of(endpoint((80, 20))), sleep=sleep)
    assert sleep.pauses == []
    assert os.stat(writer.clusters_path).st_ino == clusters_before
    weights = [
        e["weight"]
        for e in weighted(
            next(
                r
                for r in yaml.safe_load(writer.routes_path.read_text())["resources"][0][
                    "virtual_hosts"
                ][0]["routes"]
                if r.get("name") == "endpoint-e"
            )
        )
    ]
    assert weights == [8000, 2000]


def test_missing_files_are_rewritten(tmp_path: Path) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0)
    snapshot = snapshot_of(endpoint())
    assert writer.write(snapshot)
    writer.routes_path.unlink()
    writer.clusters_path.unlink()
    assert writer.write(snapshot)
    assert writer.routes_path.exists() and writer.clusters_path.exists()


def test_files_are_complete_typed_xds_documents(tmp_path: Path) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0)
    snapshot = snapshot_of(
        endpoint(
            pools=(GPU_POOL, ()),
            shadows=(ShadowSpec("s", "m", Selector(version=3), 0.5, SHADOW_POOL),),
        ),
        revision=77,
    )
    assert writer.write(snapshot)
    clusters_doc = yaml.safe_load(writer.clusters_path.read_text())
    routes_doc = yaml.safe_load(writer.routes_path.read_text())
    for document in (clusters_doc, routes_doc):
        assert set(document) == {"version_info", "resources"}
        assert isinstance(document["version_info"], str)
        assert document["version_info"].startswith("77.")
    assert [r["@type"] for r in clusters_doc["resources"]] == [
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    ] * len(snapshot.clusters)
    assert [{k: v for k, v in r.items() if k != "@type"} for r in clusters_doc["resources"]] == (
        snapshot.clusters
    )
    (config,) = routes_doc["resources"]
    assert config.pop("@type") == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    assert config == snapshot.routes and config["name"] == xds.ROUTE_CONFIG
    # Renamed into place: no temporary files left behind.
    assert sorted(p.name for p in writer.directory.iterdir()) == ["clusters.yaml", "routes.yaml"]
    # A new version on every rewrite, so Envoy takes it.
    first = routes_doc["version_info"]
    writer.write(snapshot_of(endpoint((10, 90)), revision=78))
    assert yaml.safe_load(writer.routes_path.read_text())["version_info"] not in (first, "")


def test_write_error_is_counted_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    writer = xds.ConfigWriter(blocked / "xds", warm_s=0)
    with caplog.at_level(logging.ERROR, logger="modelhub.router.xds"):
        assert not writer.write(snapshot_of(endpoint()))
    assert (writer.errors, writer.writes) == (1, 0)
    assert "could not write Envoy's configuration" in caplog.text


def test_write_error_midway_is_retried_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = xds.ConfigWriter(tmp_path / "xds", warm_s=0)
    snapshot = snapshot_of(endpoint(pools=(GPU_POOL, ())))
    real_replace = os.replace

    def fail_routes(src: str, dst: str | Path) -> None:
        if str(dst).endswith(xds.ROUTES_FILE):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_routes)
    assert not writer.write(snapshot)
    assert writer.errors == 1 and not writer.routes_path.exists()
    assert [p.name for p in writer.directory.iterdir()] == ["clusters.yaml"]  # no temp file
    monkeypatch.setattr(os, "replace", real_replace)
    assert writer.write(snapshot)
    assert named_clusters(writer) <= cluster_names(writer)
    assert writer.errors == 1 and writer.writes == 1


def test_a_restarted_writer_keeps_the_clusters_the_routes_on_disk_name(tmp_path: Path) -> None:
    directory = tmp_path / "xds"
    assert xds.ConfigWriter(directory, warm_s=0).write(snapshot_of(endpoint(pools=(GPU_POOL, ()))))
    restarted = xds.ConfigWriter(directory, warm_s=0.5)
    sleep = Recorder(restarted)
    assert restarted.write(snapshot_of(endpoint(pools=(CANARY_POOL, ()))), sleep=sleep)
    for _, on_disk, named in sleep.pauses:
        assert named <= on_disk


# ------------------------------------------------------------ agreement with the filter


def test_the_routing_filter_reads_the_metadata_the_routes_carry(snap: xds.Snapshot) -> None:
    source = envoy.ROUTE_FILTER_SOURCE.read_text(encoding="utf-8")
    assert f'#define NAMESPACE "{xds.ROUTE_NAMESPACE}"' in source
    keys = {key for r in routes_of(snap) if "metadata" in r for key in meta(r)}
    assert keys == {
        "endpoint",
        "salt",
        "total",
        "key_header",
        "key_parameter",
        "shadows",
        "unresolved",
    }
    for key in keys:
        assert f'"{key}"' in source, key


def test_envoy_strips_every_header_it_sets_for_inference() -> None:
    """A client cannot choose its variant, target, fallback or bucket: the bootstrap's
    header_mutation filter (before the routing filter) removes client-sent copies of every
    header the routes and shadow clusters set."""
    rendered = yaml.safe_load(envoy.render(envoy.LOCAL))
    hcm = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = [f["name"] for f in hcm["typed_config"]["http_filters"]]
    mutation = filters.index("envoy.filters.http.header_mutation")
    assert mutation < filters.index("modelhub.route")
    config = hcm["typed_config"]["http_filters"][mutation]["typed_config"]
    stripped = {m["remove"] for m in config["mutations"]["request_mutations"]}
    assert "x-modelhub-model" not in stripped  # a client may name the model
    assert {
        xds.HEADER_ENDPOINT,
        xds.HEADER_VARIANT,
        xds.HEADER_TARGET,
        xds.HEADER_FALLBACK,
        xds.HEADER_SHADOW,
        xds.HEADER_MIRRORED,
        xds.HEADER_BUCKET,
        "x-modelhub-key-hash",
        "x-modelhub-route",
    } <= stripped


def test_shadow_clusters_of_different_endpoints_never_share_a_name() -> None:
    def with_shadow(endpoint_id: str, shadow: str) -> EndpointSpec:
        spec = ShadowSpec(shadow, "m", Selector(version=3), 1.0)
        return endpoint(name=endpoint_id, shadows=(spec,))

    snapshot = xds.snapshot(table(state(with_shadow("a-b", "c"), with_shadow("a", "b-c"))), OPTIONS)
    first = meta(route(snapshot, "a-b"))["shadows"][0][1]
    second = meta(route(snapshot, "a"))["shadows"][0][1]
    assert first != second


def test_seeding_never_replaces_what_a_router_wrote(tmp_path: Path) -> None:
    """The seeding step and a starting router may write into the directory at the same
    time: the seed only fills in missing files, and the router rewrites a file that was
    replaced under it even when its own content did not change."""
    snapshot = xds.snapshot(table(state(endpoint())), OPTIONS)
    router = xds.ConfigWriter(tmp_path, warm_s=0)
    assert router.write(snapshot)
    written = {p.name: p.read_text() for p in (router.clusters_path, router.routes_path)}
    seed = xds.ConfigWriter(tmp_path, warm_s=0)
    assert seed.seed(xds.snapshot(table(state()), OPTIONS)) == []
    assert {p.name: p.read_text() for p in (router.clusters_path, router.routes_path)} == written

    # Someone replaces the clusters file (an old seed, an operator): the next write of the
    # same snapshot puts the router's clusters back.
    router.clusters_path.unlink()
    assert seed.seed(xds.snapshot(table(state()), OPTIONS)) == [router.clusters_path]
    assert "shadow" not in router.clusters_path.read_text()
    assert router.write(snapshot)
    assert router.clusters_path.read_text() != ""
    names = {c["name"] for c in yaml.safe_load(router.clusters_path.read_text())["resources"]}
    assert names == {c["name"] for c in snapshot.clusters}
    assert not router.write(snapshot)  # now unchanged on disk too
