"""Every routed request becomes one event at the monitor, outcomes reported to the router
are attributed per variant, and a monitor outage drops events (counted) without touching
the requests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from tests.service.router.conftest import RouterFactory
from tests.service.router.helpers import (
    by_user,
    create_endpoint,
    monitor_stub,
    params,
    start_monitor,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Any]:
    app = await start_monitor(tmp_path)
    yield app
    await app.stop(0)


async def test_events_and_outcomes_reach_the_monitor(
    registry_api: Stub, routers: RouterFactory, monitor: Any
) -> None:
    await create_endpoint(
        registry_api, "exp", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
    )
    _, clients = await routers(monitor_address=monitor.runtime.address, event_sample_rate=1.0)
    served: dict[str, str] = {}
    for user in range(60):
        response = await clients.infer("exp", user=str(user), request_id=f"r{user}")
        served[response.id] = params(response)["modelhub.variant"]
    # Users of variant b convert, users of a do not.
    for request_id, name in served.items():
        answer = await clients.router.RecordOutcome(
            pb.RecordOutcomeRequest(request_id=request_id, value=1.0 if name == "b" else 0.0)
        )
        assert answer.attributed and answer.variant == name and answer.forwarded

    async with grpc.aio.insecure_channel(monitor.runtime.address) as channel:
        stub = monitor_stub(channel)

        async def report() -> mpb.ExperimentReport:
            return await stub.GetExperimentReport(
                mpb.GetExperimentReportRequest(endpoint="endpoints/exp", window_seconds=300)
            )

        async def all_outcomes() -> bool:
            return sum(v.outcomes for v in (await report()).variants) == len(served)

        await wait_for(all_outcomes)
        variants = {v.variant: v for v in (await report()).variants}
        for name in ("a", "b"):
            assert variants[name].requests == list(served.values()).count(name)
        assert variants["b"].outcome_rate == 1.0 and variants["a"].outcome_rate == 0.0
        # The router reports one event per request, under its own source.
        stats = await stub.ListStats(
            mpb.ListStatsRequest(filter=mpb.SeriesKey(source="router"), window_seconds=300)
        )
        assert sum(s.requests for s in stats.stats) == len(served)
        assert all(s.key.endpoint == "endpoints/exp" for s in stats.stats)
    router_stats = await clients.stats()
    assert router_stats.monitor_events_sent == len(served)
    assert router_stats.monitor_events_dropped == 0


async def test_monitor_down_drops_and_counts_events_requests_unaffected(
    registry_api: Stub, routers: RouterFactory
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{sock.getsockname()[1]}"
    await create_endpoint(registry_api, "e", [variant("a", 1, 1)])
    _, clients = await routers(monitor_address=nowhere, event_buffer_size=50, monitor_timeout_s=0.5)
    for _ in range(120):
        assert params(await clients.infer("e"))["modelhub.variant"] == "a"

    async def all_dropped() -> bool:
        stats = await clients.stats()
        return stats.monitor_events_dropped == 120 and stats.monitor_events_buffered == 0

    await wait_for(all_dropped)
    stats = await clients.stats()
    assert stats.monitor_events_sent == 0
