"""The adaptive batcher, with a fake session whose runs the test can hold back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

from modelhub.common.errors import (
    DeadlineExpiredError,
    InternalError,
    ModelNotReadyError,
    QueueFullError,
)
from modelhub.inference.batcher import AdaptiveBatcher
from modelhub.inference.cost_model import CostModel
from modelhub.inference.metrics import InferenceMetrics, VersionTelemetry
from modelhub.inference.spec import BatchingPolicy


class FakeInstance:
    """y = 2·x, computed in its own thread; runs wait while the gate is closed."""

    def __init__(self, name: str = "fake#0") -> None:
        self.name = name
        self.executor = ThreadPoolExecutor(1)
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = False

    def timed_run(self, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
        x = feeds["x"]
        self.batches.append(x.copy())
        self.started.set()
        assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("kernel exploded")
        return [x * 2], 0.001


async def _started(instance: FakeInstance) -> None:
    """Wait until a run entered the fake session (it holds there while gated)."""
    while not instance.started.is_set():
        await asyncio.sleep(0.001)
    instance.started.clear()


def _rows(n: int, width: int = 2, start: float = 0.0) -> np.ndarray:
    return (np.arange(n * width, dtype=np.float32) + start).reshape(n, width)


def _make(
    policy: BatchingPolicy, *, batchable: bool = True, tracer: object = None
) -> tuple[AdaptiveBatcher, FakeInstance, VersionTelemetry]:
    instance = FakeInstance()
    telemetry = InferenceMetrics(CollectorRegistry()).for_version("m", "1")
    batcher = AdaptiveBatcher(
        name="m/1",
        input_names=["x"],
        instances=[instance],
        policy=policy,
        batchable=batchable,
        cost=CostModel(policy.max_batch_size),
        observer=telemetry,
        tracer=tracer,  # type: ignore[arg-type]
    )
    return batcher, instance, telemetry


@pytest.fixture
async def gated() -> AsyncIterator[tuple[AdaptiveBatcher, FakeInstance, VersionTelemetry]]:
    batcher, instance, telemetry = _make(
        BatchingPolicy(max_batch_size=16, max_queue_delay_s=0.0, max_queue_size=8)
    )
    batcher.start()
    yield batcher, instance, telemetry
    instance.gate.set()
    await batcher.close()


def _submit(batcher: AdaptiveBatcher, x: np.ndarray, **kwargs: object) -> asyncio.Future:
    return batcher.submit((x,), x.shape[0], (x.shape[1:],), **kwargs)  # type: ignore[arg-type]


async def test_rows_of_queued_requests_run_as_one_batch(gated) -> None:
    batcher, instance, telemetry = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)  # the executor is busy: the next requests queue up
    inputs = [_rows(1, start=100), _rows(3, start=200), _rows(7, start=300)]
    futures = [_submit(batcher, x) for x in inputs]
    instance.gate.set()
    results = await asyncio.gather(first, *futures)
    assert [b.shape[0] for b in instance.batches] == [1, 11]
    for x, (y,) in zip(inputs, results[1:], strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert telemetry.stats.inference_count == 12
    assert telemetry.stats.execution_count == 2
    assert sorted(telemetry.stats.batches) == [1, 11]


async def test_only_compatible_shapes_share_a_batch(gated) -> None:
    batcher, instance, _ = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    narrow = [_submit(batcher, _rows(2, width=2)), _submit(batcher, _rows(1, width=2))]
    wide = _submit(batcher, _rows(2, width=5))
    instance.gate.set()
    await asyncio.gather(first, *narrow, wide)
    assert [b.shape for b in instance.batches] == [(1, 2), (3, 2), (2, 5)]


async def test_batches_stay_within_max_batch_size() -> None:
    batcher, instance, _ = _make(BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0))
    batcher.start()
    try:
        instance.gate.clear()
        first = _submit(batcher, _rows(1))
        await _started(instance)
        rest = [_submit(batcher, _rows(n)) for n in (5, 5, 3)]
        instance.gate.set()
        await asyncio.gather(first, *rest)
        assert [b.shape[0] for b in instance.batches] == [1, 5, 8]
    finally:
        await batcher.close()


async def test_priority_levels() -> None:
    batcher, instance, _ = _make(
        BatchingPolicy(max_batch_size=1, max_queue_delay_s=0.0, priority_levels=3)
    )
    batcher.start()
    try:
        instance.gate.clear()
        first = _submit(batcher, _rows(1))
        await _started(instance)
        low = _submit(batcher, _rows(1, start=1000))  # no priority: the lowest level
        mid = _submit(batcher, _rows(1, start=2000), priority=2)
        high = _submit(batcher, _rows(1, start=3000), priority=1)
        instance.gate.set()
        await asyncio.gather(first, low, mid, high)
        assert [b[0, 0] for b in instance.batches[1:]] == [3000, 2000, 1000]
    finally:
        await batcher.close()


async def test_full_queue_refuses_at_once(gated) -> None:
    batcher, instance, telemetry = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    queued = [_submit(batcher, _rows(1)) for _ in range(8)]
    with pytest.raises(QueueFullError, match="full"):
        _submit(batcher, _rows(1))
    assert not instance.gate.is_set()  # refused while nothing could have finished
    assert telemetry.stats.rejected_count == 1
    instance.gate.set()
    await asyncio.gather(first, *queued)


async def test_server_deadline_expires_in_the_queue_and_is_never_run(gated) -> None:
    batcher, instance, telemetry = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    loop = asyncio.get_running_loop()
    doomed = _submit(
        batcher, _rows(1, start=999), deadline=loop.time() + 0.05, server_deadline=True
    )
    with pytest.raises(DeadlineExpiredError):
        await doomed  # answered by the batcher's timer while the run still holds
    assert not instance.gate.is_set()
    survivor = _submit(batcher, _rows(1, start=5))
    instance.gate.set()
    await asyncio.gather(first, survivor)
    assert all(999 not in b for b in instance.batches)
    assert telemetry.stats.expired_count == 1


async def test_transport_deadline_passed_while_queued_is_dropped_before_compute(gated) -> None:
    batcher, instance, telemetry = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    loop = asyncio.get_running_loop()
    late = _submit(batcher, _rows(1, start=999), deadline=loop.time() + 0.02)
    await asyncio.sleep(0.05)  # the deadline passes while the executor is busy
    instance.gate.set()
    await first
    with pytest.raises(DeadlineExpiredError):
        await late
    assert all(999 not in b for b in instance.batches)
    assert telemetry.stats.expired_count == 1


async def test_cancelled_request_is_not_computed(gated) -> None:
    batcher, instance, _ = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    gone = _submit(batcher, _rows(1, start=999))
    gone.cancel()
    kept = _submit(batcher, _rows(1, start=7))
    instance.gate.set()
    await asyncio.gather(first, kept)
    assert all(999 not in b for b in instance.batches)
    assert batcher.depth == 0


async def test_a_lone_request_is_not_held_back() -> None:
    # A ten-second max_queue_delay: holding for it would trip the wait_for below.
    batcher, _, _ = _make(BatchingPolicy(max_batch_size=64, max_queue_delay_s=10.0))
    batcher.start()
    try:
        for _ in range(3):
            (y,) = await asyncio.wait_for(_submit(batcher, _rows(1, start=3)), 5)
            np.testing.assert_array_equal(y, _rows(1, start=3) * 2)
    finally:
        await batcher.close()


async def test_not_batchable_runs_one_request_at_a_time() -> None:
    batcher, instance, _ = _make(BatchingPolicy(max_batch_size=64), batchable=False)
    batcher.start()
    try:
        instance.gate.clear()
        first = batcher.submit((_rows(2),), 1, None)
        await _started(instance)
        rest = [batcher.submit((_rows(2, start=i),), 1, None) for i in range(3)]
        instance.gate.set()
        await asyncio.gather(first, *rest)
        assert [b.shape for b in instance.batches] == [(2, 2)] * 4
    finally:
        await batcher.close()


async def test_a_failed_run_fails_its_requests_only(gated) -> None:
    batcher, instance, _ = gated
    instance.fail = True
    with pytest.raises(InternalError, match="kernel exploded"):
        await _submit(batcher, _rows(1))
    instance.fail = False
    (y,) = await _submit(batcher, _rows(1, start=1))
    np.testing.assert_array_equal(y, _rows(1, start=1) * 2)


async def test_close_fails_what_is_still_queued() -> None:
    batcher, instance, _ = _make(BatchingPolicy(max_batch_size=1, max_queue_delay_s=0.0))
    batcher.start()
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    queued = _submit(batcher, _rows(1))
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    instance.gate.set()
    await closing
    with pytest.raises(ModelNotReadyError):
        await queued
    with pytest.raises(ModelNotReadyError):
        await first  # its executor was stopped mid-run
    with pytest.raises(ModelNotReadyError):
        _submit(batcher, _rows(1))


async def test_batch_span_links_the_request_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    batcher, instance, _ = _make(
        BatchingPolicy(max_batch_size=8, max_queue_delay_s=0.0),
        tracer=provider.get_tracer("test"),
    )
    batcher.start()
    try:
        instance.gate.clear()
        contexts = [
            SpanContext(
                trace_id=i + 1,
                span_id=i + 1,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            for i in range(3)
        ]
        first = _submit(batcher, _rows(1), span_context=contexts[0])
        await _started(instance)
        rest = [_submit(batcher, _rows(1), span_context=c) for c in contexts[1:]]
        instance.gate.set()
        await asyncio.gather(first, *rest)
    finally:
        await batcher.close()
    spans = [s for s in exporter.get_finished_spans() if s.name == "inference.batch"]
    assert len(spans) == 2
    assert [link.context.span_id for link in spans[1].links] == [2, 3]
    assert spans[1].attributes["modelhub.batch.rows"] == 2


async def test_background_runs_below_every_priority_level() -> None:
    batcher, instance, _ = _make(
        BatchingPolicy(max_batch_size=1, max_queue_delay_s=0.0, priority_levels=2)
    )
    batcher.start()
    try:
        instance.gate.clear()
        first = _submit(batcher, _rows(1))
        await _started(instance)
        shadow = _submit(batcher, _rows(1, start=1000), background=True)
        low = _submit(batcher, _rows(1, start=2000))  # no priority: the lowest level
        high = _submit(batcher, _rows(1, start=3000), priority=1)
        instance.gate.set()
        await asyncio.gather(first, shadow, low, high)
        assert [b[0, 0] for b in instance.batches[1:]] == [3000, 2000, 1000]
    finally:
        await batcher.close()


async def test_background_fills_at_most_half_the_queue(gated) -> None:
    batcher, instance, _ = gated
    instance.gate.clear()
    first = _submit(batcher, _rows(1))
    await _started(instance)
    limit = batcher.policy.max_queue_size // 2
    queued = [_submit(batcher, _rows(1), background=True) for _ in range(limit)]
    with pytest.raises(QueueFullError):
        _submit(batcher, _rows(1), background=True)
    queued.append(_submit(batcher, _rows(1)))  # a request someone waits for still fits
    instance.gate.set()
    await asyncio.gather(first, *queued)
