"""Outcomes joined to the requests that earned them, within the join window, bounded."""

from __future__ import annotations

import pytest

from modelhub.monitor.clock import ManualClock
from modelhub.monitor.events import Outcome
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.outcomes import Attribution, RequestIndex
from modelhub.monitor.series import Series, SeriesKey
from modelhub.monitor.timeseries import HistoryPool

from .helpers import event


def test_outcomes_join_to_router_and_inference_series(monitor: Monitor) -> None:
    routed = dict(endpoint="endpoints/fraud", variant="challenger", request_id="r1")
    monitor.ingest([event(source="router", **routed), event(source="inference", request_id="r1")])
    monitor.ingest([event(request_id="r2"), event(request_id="r3")])
    result = monitor.record_outcomes(
        [Outcome("r1", 1.0), Outcome("r2", 0.0), Outcome("r1", 1.0), Outcome("nope", 1.0)]
    )
    assert (result.attributed, result.duplicates, result.unattributed) == (2, 1, 1)
    router = monitor.stats(SeriesKey(variant="challenger"), 300)
    assert (router.outcomes, router.conversions, router.outcome_rate) == (1, 1, 1.0)
    inference = monitor.stats(SeriesKey(source="inference"), 300)
    assert inference.conversions == 1
    everything = monitor.stats(SeriesKey(source="router"), 300)
    assert everything.requests == 3 and everything.outcomes == 2
    assert everything.outcome_rate == pytest.approx(1 / 3)
    assert everything.outcome_mean == pytest.approx(0.5)


def test_outcomes_after_the_join_window_are_not_attributed(
    monitor: Monitor, clock: ManualClock
) -> None:
    monitor.ingest([event(request_id="late"), event(request_id="ok")])
    clock.advance(600)
    assert monitor.record_outcomes([Outcome("ok", 1.0)]).attributed == 1
    stale = Outcome("late", 1.0, time=clock() + monitor.settings.join_window_s)
    assert monitor.record_outcomes([stale]).unattributed == 1


def test_index_forgets_old_ids_and_respects_its_cap() -> None:
    series = Series(SeriesKey("models/m", 1), 0.01, 256, HistoryPool(1))
    index = RequestIndex(max_requests=100, join_window_s=60.0)
    t = 1_000_000.0
    for i in range(150):
        index.remember(f"r{i}", t + i * 0.1, series, now=t + i * 0.1)
    assert len(index) == 100
    assert index.evicted_early == 50
    assert index.attribute(Outcome("r0", 1.0), t + 20) is Attribution.UNATTRIBUTED
    assert index.attribute(Outcome("r149", 1.0), t + 20) is Attribution.ATTRIBUTED
    # Time passes beyond the window: the next request sweeps the old ones out.
    index.remember("new", t + 1000, series, now=t + 1000)
    assert len(index) == 1


def test_an_outcome_before_its_event_is_attributed_when_the_event_arrives(
    monitor: Monitor, clock: ManualClock
) -> None:
    # Inference sends events in batches; the client reports the outcome at once.
    early = monitor.record_outcomes([Outcome("r-early", 1.0)])
    assert early.unattributed == 1
    routed = dict(endpoint="endpoints/fraud", variant="challenger")
    monitor.ingest([event(source="inference", request_id="r-early", **routed)])
    stats = monitor.stats(SeriesKey(variant="challenger"), 300)
    assert (stats.outcomes, stats.conversions) == (1, 1)
    # Counted once: the same outcome again is a duplicate.
    assert monitor.record_outcomes([Outcome("r-early", 1.0)]).duplicates == 1


def test_pending_outcomes_are_bounded_in_count_and_time() -> None:
    series = Series(SeriesKey("models/m", 1), 0.01, 256, HistoryPool(1))
    index = RequestIndex(max_requests=100, join_window_s=60.0, max_pending=10, pending_s=5.0)
    t = 1_000_000.0
    for i in range(25):
        index.attribute(Outcome(f"p{i}", 1.0, time=t), t)
    assert index.pending == 10  # the oldest went first
    index.remember("p0", t, series, now=t)
    assert index.attributed_late == 0
    index.remember("p24", t, series, now=t)
    assert index.attributed_late == 1
    # Older than pending_s: forgotten.
    index.attribute(Outcome("late", 1.0, time=t + 10), t + 10)
    assert index.pending == 1
