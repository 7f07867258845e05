"""Inference reports each request to a real monitor (in-process, on 127.0.0.1:0): direct
calls, routed calls, errors, and a mirrored primary and its shadow copy, which the monitor
joins by request id into a shadow comparison."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.monitor import migrate
from modelhub.monitor.clock import ManualClock
from tests.service.inference.conftest import StartInference, stubs
from tests.service.inference.oip import infer_request
from tests.service.monitor.conftest import Service, start_service
from tests.unit.inference.helpers import mlp_model

ROUTED = (
    ("x-modelhub-endpoint", "endpoints/shop"),
    ("x-modelhub-variant", "champion"),
    ("x-modelhub-target", "fraud:1"),
    ("x-envoy-attempt-count", "1"),
    ("x-modelhub-key-hash", "k42"),
    ("x-request-id", "req-1"),
)


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Service]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"
    await migrate.upgrade(url)
    service = await start_service(url, ManualClock(time.time()))
    yield service
    await service.close()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "fraud").mkdir(parents=True)
    (root / "fraud" / "1.onnx").write_bytes(mlp_model(1))
    (root / "fraud" / "2.onnx").write_bytes(mlp_model(2))
    return root


async def _eventually(check, within_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_events_reach_the_monitor_and_shadows_are_joined(
    start_inference: StartInference, channel_to, model_dir: Path, monitor: Service
) -> None:
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        monitor_address=monitor.app.runtime.address,
        event_flush_interval_s=0.05,
        event_sample_rate=1.0,
    )
    stub, _ = stubs(channel_to(app))
    x = np.ones((2, 8), np.float32)
    await stub.ModelInfer(infer_request("fraud", {"x": x}, version="1", request_id="direct-1"))
    await stub.ModelInfer(
        infer_request("shop", {"x": x}), metadata=(*ROUTED, ("x-modelhub-mirrored", "1"))
    )
    shadow_headers = (
        ("x-modelhub-endpoint", "endpoints/shop"),
        ("x-modelhub-variant", "candidate"),
        ("x-modelhub-target", "fraud:2"),
        ("x-modelhub-shadow", "1"),
        ("x-request-id", "req-1"),
    )
    await stub.ModelInfer(infer_request("shop", {"x": x}), metadata=shadow_headers)
    with pytest.raises(grpc.aio.AioRpcError):  # wrong width: INVALID_ARGUMENT, reported
        await stub.ModelInfer(
            infer_request("shop", {"x": np.ones((1, 3), np.float32)}), metadata=ROUTED
        )

    async def compared() -> list[mpb.ShadowSummary]:
        report = await monitor.stub.GetShadowReport(
            mpb.GetShadowReportRequest(endpoint="endpoints/shop")
        )
        return list(report.shadows)

    [shadow] = await _eventually(compared)
    assert (shadow.shadow, shadow.model, shadow.version, shadow.compared) == (
        "candidate",
        "models/fraud",
        2,
        1,
    )
    assert shadow.failed == 0 and shadow.argmax_compared == 1
    assert shadow.max_abs_diff_max > 0  # different weights, different answers

    async def endpoint_stats() -> mpb.Stats | None:
        # The monitor's clock is manual and the events carry the inference server's real
        # time: bring the clock up to the events (a frozen clock misses those recorded in a
        # later time bucket than the one it stopped in).
        monitor.clock.advance(max(0.0, time.time() - monitor.clock.now))
        stats = await monitor.stub.GetStats(
            mpb.GetStatsRequest(key=mpb.SeriesKey(endpoint="endpoints/shop"), window_seconds=300)
        )
        return stats if stats.requests == 2 else None

    stats = await _eventually(endpoint_stats)
    assert stats is not None and stats.errors == 1  # the shadow is not an endpoint request
    listed = await monitor.stub.ListStats(mpb.ListStatsRequest(window_seconds=300))
    keys = {(s.key.version, s.key.endpoint, s.key.variant, s.key.source) for s in listed.stats}
    assert keys == {
        (1, "", "", "inference"),  # the direct call
        (1, "endpoints/shop", "champion", "inference"),
        (2, "", "", "inference"),  # the shadow, in its version's own series
    }
    # Outcomes reported by request id reach the routed variant.
    outcome = await monitor.stub.RecordOutcomes(
        mpb.RecordOutcomesRequest(outcomes=[mpb.Outcome(request_id="req-1", value=1.0)])
    )
    assert outcome.attributed == 1
    # Drift samples: the first rows of the sampled events.
    samples = monitor.app.monitor.samples
    assert len(samples) >= 1

    body = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(
                f"http://127.0.0.1:{app.runtime.metrics_port}/metrics", timeout=5
            )
            .read()
            .decode()
        )
    )
    assert 'modelhub_inference_monitor_events_total{result="sent"} 4.0' in body
    assert 'modelhub_inference_monitor_events_total{result="dropped"} 0.0' in body


async def test_an_unreachable_monitor_costs_nothing_but_dropped_events(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        monitor_address="127.0.0.1:1",
        monitor_timeout_s=0.5,
        event_flush_interval_s=0.05,
    )
    stub, _ = stubs(channel_to(app))
    response = await stub.ModelInfer(infer_request("fraud", {"x": np.ones((1, 8), np.float32)}))
    assert response.model_version == "2"
    assert app.events is not None

    async def dropped() -> bool:
        return app.events is not None and app.events.dropped == 1

    assert await _eventually(dropped)
