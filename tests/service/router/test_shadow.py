"""Shadows through the front door: Envoy mirrors the requests of sampled keys (exactly the
keys ExplainRoute lists) fire-and-forget, inference reports both halves and the monitor's
shadow report compares them; a shadow that sleeps 5 s or fails never slows or fails the
primary."""

from __future__ import annotations

import asyncio
import socket
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import FrontDoor, FrontDoorFactory
from tests.service.router.helpers import (
    Behaviour,
    FaultyBackend,
    by_user,
    create_endpoint,
    monitor_stub,
    output,
    params,
    shadow,
    start_inference,
    start_monitor,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Any]:
    # A short join window: a shadow that never answers counts as failed after 1 s.
    app = await start_monitor(tmp_path, shadow_join_window_s=1.0)
    yield app
    await app.stop(0)


@pytest.fixture
async def reporting(
    registry_api: Stub, registry_address: str, tmp_path: Path, monitor: Any
) -> AsyncIterator[InferenceApp]:
    """An inference server that reports every request to the monitor (flushed often)."""
    app = await start_inference(
        registry_address,
        tmp_path,
        name="reporting",
        monitor_address=monitor.runtime.address,
        event_flush_interval_s=0.1,
    )
    yield app
    await app.stop(0)


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyBackend]:
    backend = await FaultyBackend().start()
    yield backend
    await backend.stop()


async def shadow_report(monitor: Any, endpoint: str) -> dict[str, mpb.ShadowSummary]:
    async with grpc.aio.insecure_channel(monitor.runtime.address) as channel:
        report = await monitor_stub(channel).GetShadowReport(
            mpb.GetShadowReportRequest(endpoint=endpoint, window_seconds=300)
        )
    return {s.shadow: s for s in report.shadows}


async def monitor_stats(monitor: Any, key: mpb.SeriesKey) -> mpb.Stats:
    async with grpc.aio.insecure_channel(monitor.runtime.address) as channel:
        return await monitor_stub(channel).GetStats(
            mpb.GetStatsRequest(key=key, window_seconds=300)
        )


async def mirrored_keys(door: FrontDoor, endpoint: str, keys: list[str]) -> set[str]:
    """The keys ExplainRoute says Envoy mirrors (to any shadow)."""
    found = set()
    for key in keys:
        answer = await door.clients.router.ExplainRoute(
            pb.ExplainRouteRequest(endpoint=f"endpoints/{endpoint}", key=key)
        )
        if answer.mirrored_to:
            found.add(key)
    return found


async def timed_primaries(
    door: FrontDoor, endpoint: str, keys: list[str], *, ids: bool = True
) -> list[float]:
    """One request per key, in turn, each checked (the primary, version 1: x + 1); the
    latency of each as the caller saw it. With `ids`, each request carries its own id;
    without, Envoy's `x-request-id` identifies it."""
    loop = asyncio.get_running_loop()
    latencies = []
    for key in keys:
        start = loop.time()
        request_id = f"req-{key}" if ids else ""
        response = await door.clients.infer(endpoint, user=key, request_id=request_id)
        latencies.append(loop.time() - start)
        assert params(response)["modelhub.variant"] == "primary"
        assert output(response).tolist() == [2.0] * 4
    return latencies


async def test_the_monitor_compares_exactly_the_sampled_keys(
    registry_api: Stub, front_doors: FrontDoorFactory, reporting: InferenceApp, monitor: Any
) -> None:
    """A real shadow (version 3: x + 3) at 30% behind a primary (version 1: x + 1): the
    monitor joins one comparison per key ExplainRoute lists as mirrored, none for the other
    keys, and each differs by 2."""
    await create_endpoint(
        registry_api,
        "half",
        [variant("primary", 1, 1)],
        sticky_key=by_user(),
        shadows=[shadow("next", 3, 0.3)],
    )
    door = await front_doors(backends=[reporting.address])
    keys = [f"user-{i}" for i in range(80)]
    mirrored = await mirrored_keys(door, "half", keys)
    assert 10 <= len(mirrored) <= 40, len(mirrored)  # about 30% of 80
    # Half the requests name their id, the others are known by Envoy's x-request-id (the
    # mirror carries the same).
    await timed_primaries(door, "half", keys[:40])
    await timed_primaries(door, "half", keys[40:], ids=False)

    async def settled() -> bool:
        primaries = await monitor_stats(monitor, mpb.SeriesKey(endpoint="endpoints/half"))
        summary = (await shadow_report(monitor, "endpoints/half")).get("next")
        compared = summary.compared if summary is not None else 0
        return primaries.requests == len(keys) and compared >= len(mirrored)

    await wait_for(settled, 10.0)
    await asyncio.sleep(0.5)  # several flushes: a comparison too many would be in by now
    summary = (await shadow_report(monitor, "endpoints/half"))["next"]
    assert summary.compared == len(mirrored)
    assert summary.failed == 0
    assert summary.version == 3
    assert summary.primary_latency.count == len(mirrored)
    # The shadow answered x + 3 where the primary answered x + 1.
    assert summary.max_abs_diff_p50 == pytest.approx(2.0, rel=0.02)
    assert summary.max_abs_diff_max == pytest.approx(2.0, rel=0.02)
    # The shadow copies ran (and were reported) only for the mirrored keys, under the
    # shadow version's own series; the primaries all under the endpoint's.
    copies = await monitor_stats(monitor, mpb.SeriesKey(model="models/m", version=3))
    assert copies.requests == len(mirrored)
    primaries = await monitor_stats(
        monitor, mpb.SeriesKey(endpoint="endpoints/half", variant="primary", version=1)
    )
    assert (primaries.requests, primaries.errors) == (len(keys), 0)


async def test_a_shadow_sleeping_5s_never_slows_the_primary(
    registry_api: Stub, front_doors: FrontDoorFactory, faulty: FaultyBackend
) -> None:
    faulty.behaviour = Behaviour(delay_s=5.0, add=1.5)
    await create_endpoint(
        registry_api,
        "slow",
        [variant("primary", 1, 1)],
        sticky_key=by_user(),
        shadows=[shadow("sleepy", 2, 1.0, pool=[faulty.address])],
    )
    door = await front_doors()
    keys = [f"user-{i}" for i in range(50)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    latencies = await timed_primaries(door, "slow", keys)
    elapsed = loop.time() - start
    # Every primary answered long before a mirror could have: none waited for its shadow.
    assert max(latencies) < 1.0, max(latencies)
    assert statistics.median(latencies) < 0.25, statistics.median(latencies)
    assert elapsed < 5.0 and faulty.answered == 0
    # Yet every request was mirrored to the sleeping shadow, as the shadow's request.
    await wait_for(lambda: faulty.received == len(keys), 5.0)
    assert faulty.in_flight == len(keys)
    copies = faulty.metadata
    assert len({m["x-request-id"] for m in copies}) == len(keys)
    for copy in copies:
        assert copy["x-modelhub-shadow"] == "1"
        assert copy["x-modelhub-variant"] == "sleepy"
        assert copy["x-modelhub-target"] == "m:2"
        assert copy["x-modelhub-endpoint"] == "endpoints/slow"
        assert "x-modelhub-mirrored" not in copy and "x-modelhub-fallback" not in copy


@pytest.mark.parametrize(
    ("error", "details"),
    [(grpc.StatusCode.UNAVAILABLE, False), (grpc.StatusCode.INTERNAL, True)],
)
async def test_a_failing_shadow_never_fails_the_primary(
    registry_api: Stub,
    front_doors: FrontDoorFactory,
    faulty: FaultyBackend,
    reporting: InferenceApp,
    monitor: Any,
    error: grpc.StatusCode,
    details: bool,
) -> None:
    faulty.behaviour = Behaviour(error=error, error_details=details)
    await create_endpoint(
        registry_api,
        "broken",
        [variant("primary", 1, 1)],
        sticky_key=by_user(),
        shadows=[shadow("bad", 2, 1.0, pool=[faulty.address])],
    )
    door = await front_doors(backends=[reporting.address])
    keys = [f"user-{i}" for i in range(30)]
    latencies = await timed_primaries(door, "broken", keys)
    assert max(latencies) < 1.0, max(latencies)
    # Every request was mirrored to the shadow, which failed every copy.
    await wait_for(lambda: faulty.received == len(keys), 5.0)
    assert faulty.answered == 0
    # Envoy's stats name the shadow's own cluster (xds.shadow_cluster_name).
    stats = door.envoy.stats()
    (total,) = [
        v
        for k, v in stats.items()
        if k.startswith("cluster.shadow") and "broken" in k and k.endswith(".upstream_rq_total")
    ]
    assert total == str(len(keys))
    # The monitor saw every primary succeed.
    key = mpb.SeriesKey(endpoint="endpoints/broken", variant="primary")

    async def reported() -> bool:
        return (await monitor_stats(monitor, key)).requests == len(keys)

    await wait_for(reported, 10.0)
    assert (await monitor_stats(monitor, key)).errors == 0


async def test_a_shadow_that_never_answers_shows_as_failed(
    registry_api: Stub, front_doors: FrontDoorFactory, reporting: InferenceApp, monitor: Any
) -> None:
    """Nothing listens where the shadow's replicas should be: Envoy's mirrors fail, no
    shadow event ever reaches the monitor, and the primaries name the shadow they were
    mirrored to — so the report counts the shadow's failures instead of staying silent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{sock.getsockname()[1]}"
    await create_endpoint(
        registry_api,
        "lost",
        [variant("primary", 1, 1)],
        sticky_key=by_user(),
        shadows=[shadow("gone", 3, 1.0, pool=[nowhere])],
    )
    door = await front_doors(backends=[reporting.address])
    keys = [f"user-{i}" for i in range(12)]
    await timed_primaries(door, "lost", keys)
    await asyncio.sleep(1.5)  # past the join window
    await timed_primaries(door, "lost", ["late-1", "late-2"])  # expiry is noticed on arrival

    async def failed() -> bool:
        report = await shadow_report(monitor, "endpoints/lost")
        return "gone" in report and report["gone"].failed >= len(keys)

    await wait_for(failed, 10.0)
    gone = (await shadow_report(monitor, "endpoints/lost"))["gone"]
    assert (gone.model, gone.version) == ("models/m", 3)
