"""Sliding windows built from fixed time buckets, in bounded memory.

A `TimeRing` keeps one aggregate per time slot of `width` seconds, for a fixed number of
slots; a slot is reused (its aggregate replaced) when time moves past it, so a ring never
holds more than `slots` aggregates whatever the traffic. A window of W seconds is the
union of the ring's last W / width slots: the current, partial one and the full ones
before it.

The monitor's windows (60 s, 300 s, 3600 s) come from two rings per series: 10-second
slots for the short windows, 1-minute slots for the hour (an event updates both, which
is cheaper than merging 360 small buckets on every read of the hour).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from modelhub.common.errors import InvalidArgumentError

A = TypeVar("A")

WINDOWS_S: tuple[int, ...] = (60, 300, 3600)
FINE_WIDTH_S = 10.0
COARSE_WIDTH_S = 60.0
# One slot more than the window needs, so the full window survives while the newest slot
# is still partial.
FINE_SLOTS = int(300 / FINE_WIDTH_S) + 1
COARSE_SLOTS = int(3600 / COARSE_WIDTH_S) + 1


def check_window(window_s: int, default: int, field: str = "window_seconds") -> int:
    """`window_s` if it is a supported window, `default` for 0, else INVALID_ARGUMENT."""
    if window_s == 0:
        return default
    if window_s not in WINDOWS_S:
        raise InvalidArgumentError(
            f"{field} must be one of {', '.join(map(str, WINDOWS_S))} (or 0 for "
            f"{default}), got {window_s}",
            field=field,
        )
    return window_s


@dataclass(frozen=True, slots=True)
class Span:
    """The slots a window covers: slot numbers (first, last] and the seconds they span."""

    first: int
    last: int
    seconds: float


class TimeRing(Generic[A]):
    """Aggregates of `width`-second time slots, at most `slots` of them."""

    __slots__ = ("_aggregates", "_factory", "_numbers", "newest", "slots", "width")

    def __init__(self, width: float, slots: int, factory: Callable[[], A]) -> None:
        self.width = width
        self.slots = slots
        self._factory = factory
        self._aggregates: list[A | None] = [None] * slots
        self._numbers: list[int] = [-1] * slots
        self.newest = -1  # newest slot number seen

    def slot_number(self, t: float) -> int:
        return int(t // self.width)

    def at(self, t: float) -> A | None:
        """The aggregate of the slot holding time `t`, or None when that slot has already
        been recycled (the time is older than the ring keeps)."""
        number = int(t // self.width)
        if number <= self.newest - self.slots:
            return None
        index = number % self.slots
        if self._numbers[index] != number:
            if number > self.newest:
                self.newest = number
                self._release_expired()
            aggregate = self._factory()
            self._aggregates[index] = aggregate
            self._numbers[index] = number
            return aggregate
        return self._aggregates[index]

    def _release_expired(self) -> None:
        # Slots that fell out of the ring would otherwise keep their memory until time
        # happens to map onto them again (never, for a series that went quiet).
        horizon = self.newest - self.slots
        numbers, aggregates = self._numbers, self._aggregates
        for index in range(self.slots):
            if numbers[index] <= horizon and aggregates[index] is not None:
                aggregates[index] = None
                numbers[index] = -1

    def peek(self, t: float) -> A | None:
        """Like `at` but never creates a slot."""
        number = int(t // self.width)
        index = number % self.slots
        if self._numbers[index] == number:
            return self._aggregates[index]
        return None

    def span(self, now: float, window_s: float) -> Span:
        last = int(now // self.width)
        count = max(1, math.ceil(window_s / self.width))
        first = last - count  # exclusive
        # From the start of the oldest slot to now: between window - width and window.
        return Span(first, last, max(now - (first + 1) * self.width, 1e-9))

    def collect(self, now: float, window_s: float) -> list[A]:
        """Aggregates of the slots inside the window ending at `now`."""
        span = self.span(now, window_s)
        return [
            aggregate
            for number, aggregate in zip(self._numbers, self._aggregates, strict=True)
            if aggregate is not None and span.first < number <= span.last
        ]

    def all(self) -> list[A]:
        """Every aggregate the ring holds, in no particular order."""
        return [aggregate for aggregate in self._aggregates if aggregate is not None]

    def is_idle(self, now: float, idle_s: float) -> bool:
        """Whether nothing was recorded in the last `idle_s` seconds."""
        return self.newest < 0 or (self.newest + 1) * self.width <= now - idle_s


def span_seconds(now: float, window_s: float) -> float:
    """Seconds a window ending at `now` really covers (see `TimeRing.span`)."""
    width = FINE_WIDTH_S if window_s <= 300 else COARSE_WIDTH_S
    count = max(1, math.ceil(window_s / width))
    first = int(now // width) - count
    return max(now - (first + 1) * width, 1e-9)


class WindowedRings(Generic[A]):
    """The fine (10 s) and coarse (1 min) rings of one series."""

    __slots__ = ("coarse", "fine")

    def __init__(self, factory: Callable[[], A]) -> None:
        self.fine: TimeRing[A] = TimeRing(FINE_WIDTH_S, FINE_SLOTS, factory)
        self.coarse: TimeRing[A] = TimeRing(COARSE_WIDTH_S, COARSE_SLOTS, factory)

    def ring_for(self, window_s: float) -> TimeRing[A]:
        return self.fine if window_s <= 300 else self.coarse

    def collect(self, now: float, window_s: float) -> list[A]:
        return self.ring_for(window_s).collect(now, window_s)
