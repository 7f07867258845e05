"""The event pipeline never blocks the caller, never grows without bound, and sends
events before the outcomes that follow them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from modelhub.common.errors import UnavailableError
from modelhub.router.events import Event, EventPipeline, Outcome, SendResult


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[list[Event]] = []
        self.calls: list[str] = []
        self.outcomes: list[Outcome] = []

    async def send_events(self, events: Sequence[Event]) -> SendResult:
        self.calls.append("events")
        if self.fail:
            raise UnavailableError("monitor down")
        self.batches.append(list(events))
        return SendResult(len(events))

    async def send_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self.calls.append("outcomes")
        if self.fail:
            raise UnavailableError("monitor down")
        self.outcomes.extend(outcomes)


def event(i: int) -> Event:
    return Event(f"r{i}", 0.0, "endpoints/e", "a", "m", 1)


def pipeline(sink: Sink, **kwargs: object) -> EventPipeline:
    options: dict[str, object] = {
        "max_buffered": 100,
        "batch_size": 10,
        "flush_interval_s": 3600.0,
        "max_outcomes": 5,
    }
    options.update(kwargs)
    return EventPipeline(sink, **options)  # type: ignore[arg-type]


async def test_batches_and_counts() -> None:
    sink = Sink()
    events = pipeline(sink)
    for i in range(25):
        events.emit(event(i))
    await events.flush()
    assert [len(b) for b in sink.batches] == [10, 10, 5]
    assert events.sent == 25 and events.dropped == 0 and events.buffered == 0


async def test_full_buffer_drops_and_counts() -> None:
    sink = Sink()
    events = pipeline(sink, max_buffered=30)
    for i in range(100):
        events.emit(event(i))
    assert events.buffered == 30 and events.dropped == 70
    await events.flush()
    assert events.sent == 30


async def test_unreachable_monitor_drops_instead_of_queueing() -> None:
    sink = Sink(fail=True)
    events = pipeline(sink)
    for i in range(25):
        events.emit(event(i))
    assert events.add_outcome(Outcome("r1", 1.0, "conversion", 0.0))
    await events.flush()
    assert events.buffered == 0
    assert events.dropped == 25 and events.sent == 0
    assert events.outcomes_dropped == 1
    # One failed call, not one per batch.
    assert sink.calls == ["events", "outcomes"]


async def test_outcomes_follow_the_events_queued_before_them() -> None:
    sink = Sink()
    events = pipeline(sink)
    events.emit(event(1))
    events.add_outcome(Outcome("r1", 1.0, "conversion", 0.0))
    await events.flush()
    assert sink.calls == ["events", "outcomes"]
    for i in range(10):
        events.add_outcome(Outcome(f"x{i}", 1.0, "conversion", 0.0))
    assert events.outcomes_dropped == 5


async def test_background_task_flushes_on_a_full_batch_and_on_close() -> None:
    sink = Sink()
    events = pipeline(sink, flush_interval_s=3600.0)
    events.start()
    for i in range(10):  # one full batch wakes the sender at once
        events.emit(event(i))
    for _ in range(100):
        if sink.batches:
            break
        await asyncio.sleep(0.01)
    assert [len(b) for b in sink.batches] == [10]
    events.emit(event(99))
    await events.close()
    assert events.sent == 11


async def test_sampler_runs_in_the_sender_and_failures_only_skip_the_sample() -> None:
    sink = Sink()

    def sampler(request: bytes, response: bytes):  # type: ignore[no-untyped-def]
        if request == b"bad":
            raise ValueError("cannot decode")
        return 2, [("input[0]", 1.0)], [("output[0]", 2.0)]

    events = pipeline(sink, sampler=sampler)
    good, bad = event(1), event(2)
    good.payload = (b"ok", b"ok")
    bad.payload = (b"bad", b"bad")
    events.emit(good)
    events.emit(bad)
    await events.flush()
    first, second = sink.batches[0]
    assert (first.rows, first.features, first.predictions) == (
        2,
        [("input[0]", 1.0)],
        [("output[0]", 2.0)],
    )
    assert first.payload is None
    assert second.features == [] and events.sent == 2
