"""Sliding windows from time buckets: what a window holds as time moves, bounded memory."""

from __future__ import annotations

import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.monitor.windows import TimeRing, WindowedRings, check_window, span_seconds

T0 = 1_699_999_200.0  # a whole hour: slots start on it


class Counter:
    def __init__(self) -> None:
        self.n = 0


def _total(aggregates: list[Counter]) -> int:
    return sum(a.n for a in aggregates)


def test_window_holds_recent_slots_and_forgets_old_ones() -> None:
    ring: TimeRing[Counter] = TimeRing(10.0, 31, Counter)
    for second in range(0, 400):  # one event per second for 400 s
        bucket = ring.at(T0 + second)
        assert bucket is not None
        bucket.n += 1
    now = T0 + 399.5
    # 60 s window: the partial current slot (390..399) and 5 full ones before it.
    assert _total(ring.collect(now, 60)) == 60
    assert ring.span(now, 60).seconds == pytest.approx(59.5)
    assert _total(ring.collect(now, 300)) == 300
    # The ring never holds more than its slots.
    assert len(ring.all()) == 31
    # Older than the ring keeps: refused, not stored.
    assert ring.at(T0 + 10) is None


def test_late_event_within_the_ring_lands_in_its_own_slot() -> None:
    ring: TimeRing[Counter] = TimeRing(10.0, 31, Counter)
    ring.at(T0 + 100).n += 1  # type: ignore[union-attr]
    late = ring.at(T0 + 35)
    assert late is not None
    late.n += 1
    assert ring.peek(T0 + 35) is late
    assert _total(ring.collect(T0 + 100, 60)) == 1
    assert _total(ring.collect(T0 + 100, 300)) == 2


def test_reused_slot_starts_empty() -> None:
    ring: TimeRing[Counter] = TimeRing(10.0, 3, Counter)
    ring.at(T0).n += 5  # type: ignore[union-attr]
    fresh = ring.at(T0 + 30)  # same slot index, three slots later
    assert fresh is not None and fresh.n == 0
    assert ring.peek(T0) is None


def test_hour_window_uses_minute_slots_and_idleness() -> None:
    rings: WindowedRings[Counter] = WindowedRings(Counter)
    for minute in range(90):
        coarse = rings.coarse.at(T0 + minute * 60)
        assert coarse is not None
        coarse.n += 1
    now = T0 + 89 * 60 + 30
    assert _total(rings.collect(now, 3600)) == 60
    assert span_seconds(now, 3600) == pytest.approx(59 * 60 + 30)
    assert not rings.coarse.is_idle(now, 3600)
    assert rings.coarse.is_idle(now + 3600 + 60, 3600)


def test_check_window() -> None:
    assert check_window(0, 300) == 300
    assert check_window(3600, 300) == 3600
    with pytest.raises(InvalidArgumentError, match="window_seconds must be one of 60, 300, 3600"):
        check_window(120, 300)
