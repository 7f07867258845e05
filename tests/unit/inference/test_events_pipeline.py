"""The event pipeline sends batches, not a call per round trip; the sink's protobuf is the
event, field for field."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.common.events import Comparison, Event, EventPipeline, Outcome, SendResult
from modelhub.common.monitor_sink import event_to_pb, events_to_pb


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
        await asyncio.sleep(0.1)
        assert sink.batches == [["r0", "r1", "r2"]]
        assert pipeline.buffered == 1  # a partial batch waits for the interval
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
