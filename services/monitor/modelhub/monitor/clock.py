"""Time sources. Every time-dependent part of the monitor takes a clock, so that tests can
drive windows and alert `for` durations without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

# Seconds since the epoch, like `time.time`.
Clock = Callable[[], float]


def system_clock() -> float:
    """Wall-clock time: event timestamps from other hosts are wall-clock times too."""
    return time.time()


class ManualClock:
    """A clock that moves only when told to (for tests and simulations)."""

    def __init__(self, start: float = 1_699_999_200.0) -> None:
        # The default start is a whole hour, so that time buckets begin on it.
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` and return the new time."""
        self.now += seconds
        return self.now
