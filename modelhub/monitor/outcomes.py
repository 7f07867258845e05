"""Joining outcomes (conversions, rewards, labels) to the requests that earned them.

The index remembers, per request id, when it was served and by which series (inference
reports each request once, with the endpoint and variant Envoy routed it by; shadow copies
are not indexed). It is bounded twice: ids older than
the join window are forgotten, and beyond `max_requests` ids the oldest go first.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

from modelhub.monitor.events import Outcome
from modelhub.monitor.series import Series


class Attribution(enum.Enum):
    ATTRIBUTED = "attributed"
    UNATTRIBUTED = "unattributed"
    DUPLICATE = "duplicate"


class _Served:
    __slots__ = ("attributed", "series", "time")

    def __init__(self, time: float, series: Series) -> None:
        self.time = time
        self.series: tuple[Series, ...] = (series,)
        self.attributed = False


class RequestIndex:
    """Request id → when and by which series it was served, for `join_window_s`."""

    def __init__(self, max_requests: int, join_window_s: float, max_skew_s: float = 300.0):
        self.max_requests = max_requests
        self.join_window_s = join_window_s
        self.max_skew_s = max_skew_s
        self._served: OrderedDict[str, _Served] = OrderedDict()
        # Ids forgotten before the join window ended, to make room (the cap was reached).
        self.evicted_early = 0

    def __len__(self) -> int:
        return len(self._served)

    def remember(self, request_id: str, t: float, series: Series, now: float) -> None:
        """Record that `series` served `request_id` at time `t`."""
        served = self._served.get(request_id)
        if served is not None:
            if series not in served.series:
                served.series = (*served.series, series)
            return
        self._served[request_id] = _Served(t, series)
        self._expire(now)

    def _expire(self, now: float) -> None:
        served = self._served
        horizon = now - self.join_window_s
        # Arrival order approximates time order; an out-of-order straggler stays a little
        # longer, which is harmless because attribution re-checks the window.
        while served:
            request_id, oldest = next(iter(served.items()))
            if oldest.time >= horizon and len(served) <= self.max_requests:
                break
            if oldest.time >= horizon:
                self.evicted_early += 1
            del served[request_id]

    def attribute(self, outcome: Outcome, now: float) -> Attribution:
        """Count `outcome` in the series that served its request, once per request."""
        served = self._served.get(outcome.request_id)
        when = outcome.time or now
        if served is None or not (
            served.time - self.max_skew_s <= when <= served.time + self.join_window_s
        ):
            return Attribution.UNATTRIBUTED
        if served.attributed:
            return Attribution.DUPLICATE
        served.attributed = True
        for series in served.series:
            series.record_outcome(served.time, outcome.value)
        return Attribution.ATTRIBUTED
