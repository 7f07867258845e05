"""Shadow mirroring at 100% against a shadow that sleeps 2 s or fails: the primary's
answers and success do not change, mirrors are counted as sent, dropped or failed, and the
comparisons reach the monitor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.service.router.conftest import RouterFactory
from tests.service.router.helpers import (
    Behaviour,
    FaultyBackend,
    by_user,
    create_endpoint,
    monitor_stub,
    output,
    params,
    shadow,
    shadow_counters,
    start_monitor,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub
REQUESTS = 20


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Any]:
    app = await start_monitor(tmp_path)
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


async def send_primaries(clients: Any, endpoint: str) -> None:
    """REQUESTS primaries, each checked: served by the primary, right answer (x + 1)."""
    for user in range(REQUESTS):
        response = await clients.infer(endpoint, user=str(user))
        assert params(response)["modelhub.variant"] == "primary"
        assert output(response).tolist() == [2.0] * 4


async def test_slow_shadow_never_holds_the_primary_and_is_bounded(
    registry_api: Stub, routers: RouterFactory, faulty: FaultyBackend, monitor: Any
) -> None:
    gate = asyncio.Event()
    faulty.behaviour = Behaviour(gate=gate, delay_s=2.0, add=1.5)
    await create_endpoint(
        registry_api,
        "slow",
        [variant("primary", 1, 1)],
        sticky_key=by_user(),
        shadows=[shadow("sleepy", 2, 1.0, pool=[faulty.address])],
    )
    app, clients = await routers(
        shadow_concurrency=4,
        shadow_queue_size=1,
        shadow_timeout_s=10.0,
        monitor_address=monitor.runtime.address,
    )
    await send_primaries(clients, "slow")
    counters = shadow_counters(await clients.stats(), "endpoints/slow")["sleepy"]
    # Every primary answered while no mirror had finished (the gate is still closed): the
    # caller never waited for a shadow.
    assert faulty.answered == 0 and counters.compared == 0 and counters.failed == 0
    # Bounded: 4 in flight and 1 queued; the other mirrors were dropped and counted.
    assert faulty.in_flight == 4 and faulty.max_in_flight == 4
    assert (counters.sent, counters.dropped) == (5, REQUESTS - 5)

    gate.set()  # the shadow now answers, each call after sleeping 2 s
    await app.mirror.drain(15.0)
    counters = shadow_counters(await clients.stats(), "endpoints/slow")["sleepy"]
    assert (counters.compared, counters.failed) == (5, 0)

    async def reported() -> bool:
        summary = (await shadow_report(monitor, "endpoints/slow")).get("sleepy")
        return summary is not None and summary.compared == 5

    await wait_for(reported)
    summary = (await shadow_report(monitor, "endpoints/slow"))["sleepy"]
    assert summary.failed == 0
    # The shadow answered x + 1.5 where the primary answered x + 1.
    assert summary.max_abs_diff_max == pytest.approx(0.5)
    assert summary.shadow_latency.p50 >= 2.0
    assert summary.primary_latency.count == 5


@pytest.mark.parametrize(
    ("error", "details"),
    [(grpc.StatusCode.INTERNAL, True), (grpc.StatusCode.UNAVAILABLE, False)],
)
async def test_failing_shadow_never_fails_the_primary(
    registry_api: Stub,
    routers: RouterFactory,
    faulty: FaultyBackend,
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
    app, clients = await routers(monitor_address=monitor.runtime.address)
    await send_primaries(clients, "broken")
    await app.mirror.drain(5.0)
    counters = shadow_counters(await clients.stats(), "endpoints/broken")["bad"]
    assert counters.sent + counters.dropped == REQUESTS
    assert counters.failed == counters.sent > 0 and counters.compared == 0

    async def reported() -> bool:
        summary = (await shadow_report(monitor, "endpoints/broken")).get("bad")
        return summary is not None and summary.compared == counters.sent

    await wait_for(reported)
    summary = (await shadow_report(monitor, "endpoints/broken"))["bad"]
    assert summary.failed == counters.sent
    # The primary's own stats at the monitor: every request OK.
    async with grpc.aio.insecure_channel(monitor.runtime.address) as channel:
        stats = await monitor_stub(channel).GetStats(
            mpb.GetStatsRequest(
                key=mpb.SeriesKey(endpoint="endpoints/broken", source="router"),
                window_seconds=300,
            )
        )
    assert (stats.requests, stats.errors) == (REQUESTS, 0)


async def test_healthy_shadow_comparisons_per_key_sampling(
    registry_api: Stub, routers: RouterFactory, monitor: Any
) -> None:
    """A real shadow (version 3: x + 3) at 50%: the same users are mirrored every time,
    and each comparison reports the difference of 2 with the primary (x + 1)."""
    await create_endpoint(
        registry_api,
        "half",
        [variant("primary", 1, 1)],
        sticky_key=by_user(),
        shadows=[shadow("next", 3, 0.5)],
    )
    app, clients = await routers(monitor_address=monitor.runtime.address)
    mirrored = {
        str(u): bool((await clients.router.ExplainRoute(_explain("half", u))).mirrored_to)
        for u in range(REQUESTS)
    }
    assert 0 < sum(mirrored.values()) < REQUESTS
    for _ in range(2):
        await send_primaries(clients, "half")
    await app.mirror.drain(5.0)
    counters = shadow_counters(await clients.stats(), "endpoints/half")["next"]
    assert counters.sent == counters.compared == 2 * sum(mirrored.values())

    async def reported() -> bool:
        summary = (await shadow_report(monitor, "endpoints/half")).get("next")
        return summary is not None and summary.compared == counters.compared

    await wait_for(reported)
    summary = (await shadow_report(monitor, "endpoints/half"))["next"]
    assert summary.max_abs_diff_p50 == pytest.approx(2.0, rel=0.02)
    assert summary.version == 3


def _explain(endpoint: str, user: int) -> Any:
    from modelhub.api.router.v1 import router_pb2 as pb

    return pb.ExplainRouteRequest(endpoint=f"endpoints/{endpoint}", key=str(user))
