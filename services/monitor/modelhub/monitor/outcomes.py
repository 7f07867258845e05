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

    def __init__(
        self,
        max_requests: int,
        join_window_s: float,
        max_skew_s: float = 300.0,
        max_pending: int = 10_000,
        pending_s: float = 30.0,
    ):
        self.max_requests = max_requests
        self.join_window_s = join_window_s
        self.max_skew_s = max_skew_s
        self._served: OrderedDict[str, _Served] = OrderedDict()
        # Outcomes that arrived before their request's event (inference sends events in
        # batches; the outcome may come straight from the client): kept `pending_s`, at most
        # `max_pending`, and attributed when the event arrives.
        self.max_pending = max_pending
        self.pending_s = pending_s
        self._pending: OrderedDict[str, tuple[Outcome, float]] = OrderedDict()
        self.attributed_late = 0
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
        entry = self._served[request_id] = _Served(t, series)
        self._expire(now)
        if self._pending:
            waiting = self._pending.pop(request_id, None)
            if waiting is not None and self._attribute_to(entry, waiting[0], now):
                self.attributed_late += 1

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
        """Count `outcome` in the series that served its request, once per request. An
        outcome for a request not seen yet waits (bounded) for the request's event."""
        served = self._served.get(outcome.request_id)
        if served is None:
            self._hold(outcome, now)
            return Attribution.UNATTRIBUTED
        if served.attributed:
            return Attribution.DUPLICATE
        if not self._attribute_to(served, outcome, now):
            return Attribution.UNATTRIBUTED
        return Attribution.ATTRIBUTED

    def _attribute_to(self, served: _Served, outcome: Outcome, now: float) -> bool:
        when = outcome.time or now
        if served.attributed or not (
            served.time - self.max_skew_s <= when <= served.time + self.join_window_s
        ):
            return False
        served.attributed = True
        for series in served.series:
            series.record_outcome(served.time, outcome.value)
        return True

    def _hold(self, outcome: Outcome, now: float) -> None:
        pending = self._pending
        pending[outcome.request_id] = (outcome, now)
        pending.move_to_end(outcome.request_id)
        horizon = now - self.pending_s
        while pending:
            oldest = next(iter(pending.values()))
            if oldest[1] >= horizon and len(pending) <= self.max_pending:
                break
            pending.popitem(last=False)

    @property
    def pending(self) -> int:
        return len(self._pending)
