"""The event pipeline sends batches, not a call per round trip; the sink's protobuf is the
event, field for field."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.common.events import (
    MAX_OUTPUTS,
    Comparison,
    Event,
    EventPipeline,
    Outcome,
    SendResult,
    event_bytes,
)
from modelhub.common.monitor_sink import event_to_pb, events_to_pb
from tests.polling import wait_for


class _SlowSink:
    """Holds each call until `release` is set, like a monitor a round trip away."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.sending = asyncio.Event()

    async def send_events(self, events: Sequence[Event]) -> SendResult:
        self.batches.append([e.request_id for e in events])
        self.sending.set()
        await self.release.wait()
        return SendResult(len(events))

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        return None


def _event(i: int) -> Event:
    return Event(f"r{i}", 1.0, "", "", "fraud", 1, 0.01)


async def test_events_arriving_during_a_send_wait_for_the_next_batch() -> None:
    sink = _SlowSink()
    pipeline = EventPipeline(
        sink, max_buffered=100, batch_size=3, flush_interval_s=60.0, max_outcomes=1
    )
    for i in range(2):
        pipeline.emit(_event(i))
    flush = asyncio.create_task(pipeline.flush())
    await sink.sending.wait()
    for i in range(2, 4):  # arrive while the first batch is in flight
        pipeline.emit(_event(i))
    sink.release.set()
    await flush
    assert sink.batches == [["r0", "r1"]]  # not a second call right behind the first
    assert (pipeline.sent, pipeline.buffered) == (2, 2)
    await pipeline.flush()
    assert sink.batches == [["r0", "r1"], ["r2", "r3"]]


async def test_a_full_batch_is_sent_without_waiting_for_the_interval() -> None:
    sink = _SlowSink()
    sink.release.set()
    pipeline = EventPipeline(
        sink, max_buffered=100, batch_size=3, flush_interval_s=60.0, max_outcomes=1
    )
    pipeline.start()
    try:
        for i in range(3):
            pipeline.emit(_event(i))
        async with asyncio.timeout(5):
            while pipeline.sent < 3:
                await asyncio.sleep(0.01)
        pipeline.emit(_event(3))
        await wait_for(lambda: pipeline.buffered == 1)
        # A partial batch waits for the interval: nothing more was sent.
        assert sink.batches == [["r0", "r1", "r2"]]
        assert pipeline.sent == 3
    finally:
        await pipeline.close()
    assert pipeline.sent == 4 and sink.batches[-1] == ["r3"]


def test_the_protobuf_carries_every_field() -> None:
    full = Event(
        "r1",
        1_700_000_000.25,
        "endpoints/shop",
        "champion",
        "fraud",
        2,
        0.01,
        14,
        "k",
        queue_s=0.002,
        compute_s=float("nan"),
        rows=3,
        features=[("input[0]", 1.0), ("input[1]", float("inf"))],
        predictions=[("output[0]", 0.5)],
        shadows=[Comparison("next", "fraud", 3, 0, 0.02, 0.1, True, True)],
        traceparent="00-ab-cd-01",
        mirrored=True,
        outputs=[0.5] * 100,
    )
    assert event_to_pb(full) == mpb.InferenceEvent(
        request_id="r1",
        time=Timestamp(seconds=1_700_000_000, nanos=250_000_000),
        endpoint="endpoints/shop",
        variant="champion",
        model="models/fraud",
        version=2,
        latency_seconds=0.01,
        queue_seconds=0.002,
        compute_seconds=0.0,  # not finite: unknown
        status_code=14,
        key_hash="k",
        rows=3,
        features=[mpb.FeatureValue(name="input[0]", number=1.0)],  # finite values only
        predictions=[mpb.FeatureValue(name="output[0]", number=0.5)],
        shadows=[
            mpb.ShadowComparison(
                shadow="next",
                model="models/fraud",
                version=3,
                latency_seconds=0.02,
                max_abs_diff=0.1,
                argmax_agree=True,
                has_argmax=True,
            )
        ],
        source="inference",
        traceparent="00-ab-cd-01",
        mirrored=True,
        outputs=[0.5] * 64,
    )
    plain = _event(7)
    batch = events_to_pb([full, plain])
    assert list(batch.events) == [event_to_pb(full), event_to_pb(plain)]
    assert batch.events[1].HasField("time") and batch.events[1].time.seconds == 1


class _HungSink:
    """A monitor that accepts the call and never answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.sending = asyncio.Event()

    async def send_events(self, events: Sequence[Event]) -> SendResult:
        self.calls += 1
        self.sending.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        await asyncio.Event().wait()


def _sampled(i: int, values: int) -> Event:
    event = _event(i)
    event.request_id = f"r{i:05d}"  # the same estimate for every one
    event.features = [(f"input[{j}]", float(j)) for j in range(values)]
    event.predictions = [(f"output[{j}]", float(j)) for j in range(values)]
    event.outputs = [0.5] * MAX_OUTPUTS
    return event


def test_the_estimate_grows_with_what_an_event_carries() -> None:
    plain = event_bytes(_event(1))
    sampled = event_bytes(_sampled(1, 32))
    assert plain >= 512
    assert sampled >= plain + 64 * 64 + MAX_OUTPUTS * 8
    with_payload = _event(2)
    with_payload.payload = (b"x" * 100_000, np.zeros(1000, np.float64))
    assert event_bytes(with_payload) >= plain + 100_000 + 8_000


async def test_a_hung_monitor_holds_at_most_the_byte_bound() -> None:
    sink = _HungSink()
    bound = 1 << 20  # ~118 events of 32 sampled inputs and outputs
    pipeline = EventPipeline(
        sink,
        max_buffered=1_000_000,  # the count bound never applies here
        max_buffered_bytes=bound,
        batch_size=50,
        flush_interval_s=0.01,
        max_outcomes=1,
    )
    pipeline.start()
    try:
        emitted = 0
        for i in range(200):
            pipeline.emit(_sampled(i, 32))
            emitted += 1
        await asyncio.wait_for(sink.sending.wait(), 5)  # a batch is in flight, forever
        for i in range(200, 5_000):
            pipeline.emit(_sampled(i, 32))
            emitted += 1
            if i % 500 == 0:
                await asyncio.sleep(0.02)  # let the sender run (it stays stuck)
        assert sink.calls == 1
        assert 0 < pipeline.buffered_bytes <= bound
        # The batch in flight counts: what waits plus what is held stays under the bound.
        per_event = event_bytes(_sampled(0, 32))
        assert pipeline.buffered_bytes == (pipeline.buffered + 50) * per_event
        assert pipeline.buffered_bytes > bound - per_event  # full, by bytes
        dropped = pipeline.dropped_by_reason
        assert dropped["buffer_bytes"] == emitted - pipeline.buffered - 50 > 0
        assert dropped["buffer_full"] == 0
        assert pipeline.dropped == dropped["buffer_bytes"]
    finally:
        await pipeline.close(timeout_s=0.05)
    # Closing abandons the hung batches: only what still waits is counted.
    assert pipeline.buffered_bytes == pipeline.buffered * event_bytes(_sampled(0, 32))


async def test_bytes_are_released_when_batches_are_sent_or_fail() -> None:
    sink = _SlowSink()
    sink.release.set()
    pipeline = EventPipeline(
        sink, max_buffered=100, max_buffered_bytes=1 << 20, batch_size=3,
        flush_interval_s=60.0, max_outcomes=1,
    )  # fmt: skip
    for i in range(5):
        pipeline.emit(_sampled(i, 4))
    assert pipeline.buffered_bytes == 5 * event_bytes(_sampled(0, 4))
    await pipeline.flush()
    assert (pipeline.sent, pipeline.buffered, pipeline.buffered_bytes) == (5, 0, 0)

    class _Down(_SlowSink):
        async def send_events(self, events: Sequence[Event]) -> SendResult:
            raise ConnectionError("down")

    down = EventPipeline(
        _Down(), max_buffered=100, batch_size=3, flush_interval_s=60.0, max_outcomes=1
    )
    for i in range(5):
        down.emit(_event(i))
    await down.flush()
    assert (down.buffered, down.buffered_bytes) == (0, 0)
    assert down.dropped_by_reason["monitor_unreachable"] == down.dropped == 5


def test_the_count_bound_still_applies() -> None:
    pipeline = EventPipeline(
        _SlowSink(), max_buffered=3, batch_size=10, flush_interval_s=60.0, max_outcomes=1
    )
    for i in range(5):
        pipeline.emit(_event(i))
    assert pipeline.buffered == 3
    assert pipeline.dropped_by_reason["buffer_full"] == 2
