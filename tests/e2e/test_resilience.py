"""Two inference instances behind Envoy under load: one is SIGKILLed; Envoy ejects it,
client-visible failures stay below 1% and stop within 5 s; restarted, it gets traffic again."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
import pytest_asyncio

from modelhub.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelhub.devstack.stack import demo_request, demo_traffic
from tests.e2e.suite import Suite, running_suite

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("resilience"),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    async with running_suite(tmp_path_factory.mktemp("resilience"), inference_instances=2) as s:
        await demo_traffic(s.front, users=10)
        yield s


def _host_requests(admin_port: int, inference_port: int) -> int:
    """Requests Envoy's inference cluster sent to one instance (its admin /clusters)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=5) as reply:
        text = reply.read().decode()
    prefix = f"inference::127.0.0.1:{inference_port}::rq_total::"
    for line in text.splitlines():
        if line.startswith(prefix):
            return int(line[len(prefix) :])
    return 0


async def _load(front: str, seconds: float, workers: int = 8) -> list[tuple[float, bool, str]]:
    """Closed-loop ModelInfer calls through Envoy: (finish time, ok, error code)."""
    results: list[tuple[float, bool, str]] = []
    rows = np.random.default_rng(1).normal(0, 1, (1, 8))
    stop_at = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(front) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)

        async def worker(index: int) -> None:
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                try:
                    await stub.ModelInfer(
                        demo_request(rows, f"load-{index}-{n}"),
                        metadata=[("x-user-id", f"user-{index}-{n % 50}")],
                        timeout=5,
                    )
                    results.append((time.monotonic(), True, ""))
                except grpc.aio.AioRpcError as exc:
                    results.append((time.monotonic(), False, exc.code().name))

        await asyncio.gather(*(worker(i) for i in range(workers)))
    return results


async def test_kill_one_instance_under_load(suite: Suite) -> None:
    victim = suite.spec("inference-2")
    running = next(r for r in suite.stack.running if r.spec.name == "inference-2")
    admin = suite.ports.envoy_admin
    load = asyncio.ensure_future(_load(suite.front, seconds=12))
    await asyncio.sleep(3)
    before_kill = await asyncio.to_thread(_host_requests, admin, victim.port)
    assert before_kill > 0, "the second instance should share the load before the kill"
    killed_at = time.monotonic()
    running.process.send_signal(signal.SIGKILL)
    results = await load
    await running.process.wait()
    suite.stack.running.remove(running)

    failures = [r for r in results if not r[1]]
    assert len(results) > 200
    assert len(failures) / len(results) < 0.01, sorted({r[2] for r in failures})
    late = [r for r in failures if r[0] > killed_at + 5]
    assert late == [], f"{len(late)} failures more than 5 s after the kill"

    # Restarted on the same port, the instance is health-checked back in and gets traffic.
    await suite.stack.start(victim)
    after_restart = await asyncio.to_thread(_host_requests, admin, victim.port)
    for _ in range(30):
        again = await _load(suite.front, seconds=1, workers=4)
        assert all(ok for _, ok, _ in again)
        if await asyncio.to_thread(_host_requests, admin, victim.port) > after_restart:
            break
    else:
        pytest.fail("the restarted instance never received traffic")
