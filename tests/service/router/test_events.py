"""Events and outcomes with Envoy in front: inference reports every request it serves
through the front door to the monitor, outcomes recorded through the router are attributed
by request id to the variant that served it, and a monitor that is down costs the requests
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.inference.main import InferenceApp
from tests.service.router.conftest import FrontDoorFactory
from tests.service.router.helpers import (
    by_user,
    create_endpoint,
    monitor_stub,
    output,
    params,
    start_inference,
    start_monitor,
    variant,
    wait_for,
)

Stub = registry_pb2_grpc.RegistryServiceStub
USERS = 60


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Any]:
    app = await start_monitor(tmp_path)
    yield app
    await app.stop(0)


async def reporting_inference(
    registry_address: str, tmp_path: Path, monitor_address: str, **overrides: Any
) -> InferenceApp:
    return await start_inference(
        registry_address,
        tmp_path,
        name="reporting",
        monitor_address=monitor_address,
        event_flush_interval_s=0.1,
        **overrides,
    )


async def test_outcomes_are_attributed_to_the_variant_that_served(
    registry_api: Stub,
    registry_address: str,
    front_doors: FrontDoorFactory,
    monitor: Any,
    tmp_path: Path,
) -> None:
    inference = await reporting_inference(registry_address, tmp_path, monitor.runtime.address)
    try:
        await create_endpoint(
            registry_api, "exp", [variant("a", 1, 50), variant("b", 2, 50)], sticky_key=by_user()
        )
        door = await front_doors(backends=[inference.address], monitor=monitor.runtime.address)
        served: dict[str, str] = {}
        for user in range(USERS):
            response = await door.clients.infer("exp", user=str(user), request_id=f"r{user}")
            assert response.id == f"r{user}"
            name = params(response)["modelhub.variant"]
            assert output(response).tolist() == [1.0 + {"a": 1, "b": 2}[name]] * 4
            served[response.id] = name
        assert set(served.values()) == {"a", "b"}

        async with grpc.aio.insecure_channel(monitor.runtime.address) as channel:
            stub = monitor_stub(channel)

            async def report() -> mpb.ExperimentReport:
                return await stub.GetExperimentReport(
                    mpb.GetExperimentReportRequest(endpoint="endpoints/exp", window_seconds=300)
                )

            async def all_requests() -> bool:
                return sum(v.requests for v in (await report()).variants) == USERS

            # Inference's events reach the monitor (outcomes attribute to known requests).
            await wait_for(all_requests, 10.0)
            # Users of variant b convert, users of a do not; sent to the router, which
            # forwards them to the monitor.
            for request_id, name in served.items():
                answer = await door.clients.router.RecordOutcome(
                    pb.RecordOutcomeRequest(
                        request_id=request_id, value=1.0 if name == "b" else 0.0
                    )
                )
                assert answer.attributed and answer.forwarded, request_id
            # An id nobody served is forwarded but not attributed.
            answer = await door.clients.router.RecordOutcome(
                pb.RecordOutcomeRequest(request_id="never-served", value=1.0)
            )
            assert answer.forwarded and not answer.attributed

            variants = {v.variant: v for v in (await report()).variants}
            assert set(variants) == {"a", "b"}
            for name, version in (("a", 1), ("b", 2)):
                count = list(served.values()).count(name)
                assert variants[name].requests == count
                assert variants[name].outcomes == count
                assert variants[name].version == version
                assert variants[name].errors == 0
            assert variants["b"].outcome_rate == 1.0
            assert variants["a"].outcome_rate == 0.0
        stats = await door.clients.stats()
        assert (stats.outcomes_attributed, stats.outcomes_unattributed) == (USERS, 1)
        assert inference.events is not None and inference.events.sent == USERS
    finally:
        await inference.stop(0)


async def test_a_monitor_that_is_down_costs_the_requests_nothing(
    registry_api: Stub, registry_address: str, front_doors: FrontDoorFactory, tmp_path: Path
) -> None:
    monitor = await start_monitor(tmp_path)
    inference = await reporting_inference(
        registry_address, tmp_path, monitor.runtime.address, monitor_timeout_s=2.0
    )
    try:
        await create_endpoint(registry_api, "e", [variant("a", 1, 1)])
        door = await front_doors(backends=[inference.address])
        events = inference.events
        assert events is not None
        for _ in range(10):
            assert params(await door.clients.infer("e"))["modelhub.variant"] == "a"
        await wait_for(lambda: events.sent == 10, 10.0)

        await monitor.stop(0)
        monitor = None
        loop = asyncio.get_running_loop()
        latencies = []
        for _ in range(120):
            start = loop.time()
            response = await door.clients.infer("e")
            latencies.append(loop.time() - start)
            assert params(response)["modelhub.variant"] == "a"
            assert output(response).tolist() == [2.0] * 4
        # No request waited for the monitor (a call to it may take up to 2 s).
        assert max(latencies) < 1.0, max(latencies)
        # The events of the outage are dropped, counted, and nothing stays buffered.
        await wait_for(lambda: events.dropped == 120 and events.buffered == 0, 10.0)
        assert events.sent == 10
    finally:
        await inference.stop(0)
        if monitor is not None:
            await monitor.stop(0)
