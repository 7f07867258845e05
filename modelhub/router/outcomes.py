"""Which variant served which request id: a bounded, time-limited index for attributing
outcomes (conversions, rewards, labels) that clients report later.

Bounded twice, so that memory never grows with traffic: ids older than `retention_s` are
forgotten, and beyond `max_requests` the oldest go first (counted as evicted early).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Served:
    """Who served a request."""

    endpoint: str  # `endpoints/{e}`, "" for a plain model request
    variant: str
    model: str  # model id
    version: int
    time: float  # monotonic seconds


class OutcomeIndex:
    """Request id → `Served`, for `retention_s` seconds and at most `max_requests` ids."""

    def __init__(
        self,
        max_requests: int,
        retention_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests <= 0:
            raise ValueError("max_requests must be positive")
        self.max_requests = max_requests
        self.retention_s = retention_s
        self._clock = clock
        self._served: OrderedDict[str, Served] = OrderedDict()
        self.evicted_early = 0

    def __len__(self) -> int:
        return len(self._served)

    def remember(self, request_id: str, served: Served) -> None:
        """Record who served `request_id` (a repeated id keeps its first server: the
        outcome belongs to what the user saw first)."""
        index = self._served
        if request_id in index:
            return
        index[request_id] = served
        if len(index) > self.max_requests:
            # One in, one out: amortized O(1) on the data path.
            _, oldest = index.popitem(last=False)
            if served.time - oldest.time < self.retention_s:
                self.evicted_early += 1

    def lookup(self, request_id: str) -> Served | None:
        """Who served `request_id`, if it is remembered and within the retention."""
        self._expire()
        served = self._served.get(request_id)
        if served is None or self._clock() - served.time > self.retention_s:
            return None
        return served

    def _expire(self) -> None:
        horizon = self._clock() - self.retention_s
        index = self._served
        while index:
            oldest = next(iter(index.values()))
            if oldest.time >= horizon:
                break
            index.popitem(last=False)
