"""Series: the requests of one (model, version, endpoint, variant, source), in windows, in
10-second steps over the hour (time series) and as cumulative counters (for Prometheus),
and the bounded table holding them."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from modelhub.monitor.stats import Bucket
from modelhub.monitor.timeseries import History, HistoryPool
from modelhub.monitor.windows import WindowedRings

# Prometheus histogram bounds of the request duration, in seconds.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# A series with no event for this long is dropped when room is needed.
IDLE_S = 3600.0
# When the table is full and nothing is idle, do not rescan it more often than this.
RESCAN_S = 10.0


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of a series, or, with empty fields (version 0), a filter over series."""

    model: str = ""
    version: int = 0
    endpoint: str = ""
    variant: str = ""
    source: str = ""

    def matches(self, key: SeriesKey) -> bool:
        """Whether the series `key` is selected by this filter (empty fields match all)."""
        return (
            (not self.model or self.model == key.model)
            and (not self.version or self.version == key.version)
            and (not self.endpoint or self.endpoint == key.endpoint)
            and (not self.variant or self.variant == key.variant)
            and (not self.source or self.source == key.source)
        )


class Cumulative:
    """Counters since the series was created: what Prometheus scrapes (it computes its own
    windows with rate(), and sums histograms across replicas)."""

    __slots__ = ("buckets", "codes", "conversions", "latency_sum", "outcomes", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.codes: dict[int, int] = {}
        # Counts per LATENCY_BUCKETS_S bound (not cumulative), plus one for +Inf.
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum = 0.0
        self.outcomes = 0
        self.conversions = 0

    def add(self, latency_s: float, status_code: int) -> None:
        self.requests += 1
        self.codes[status_code] = self.codes.get(status_code, 0) + 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1
        self.latency_sum += latency_s


class Series:
    """One series: its fine and coarse time rings, its steps over the hour (a history from
    `histories`, from its first event, while the pool has one) and its cumulative
    counters."""

    __slots__ = ("_histories", "cumulative", "history", "key", "rings")

    def __init__(self, key: SeriesKey, alpha: float, max_bins: int, histories: HistoryPool) -> None:
        self.key = key
        self.rings: WindowedRings[Bucket] = WindowedRings(lambda: Bucket(alpha, max_bins))
        self._histories = histories
        self.history: History | None = None
        self.cumulative = Cumulative()

    def record(
        self,
        t: float,
        latency_s: float,
        status_code: int,
        queue_s: float,
        compute_s: float,
        labels: list[str],
        max_labels: int,
    ) -> bool:
        """Count one request at time `t`; False when `t` is older than the series keeps."""
        coarse = self.rings.coarse.at(t)
        if coarse is None:
            return False
        coarse.add(latency_s, status_code, queue_s, compute_s, labels, max_labels)
        fine = self.rings.fine.at(t)
        if fine is not None:  # None: older than the short windows, still inside the hour
            fine.add(latency_s, status_code, queue_s, compute_s, labels, max_labels)
        history = self.history or self._histories.acquire(self, t)
        if history is not None:
            history.record(t, latency_s, status_code)
        self.cumulative.add(latency_s, status_code)
        return True

    def record_outcome(self, served_t: float, value: float) -> None:
        """Attribute an outcome to the buckets that counted its request."""
        for ring in (self.rings.fine, self.rings.coarse):
            bucket = ring.peek(served_t)
            if bucket is not None:
                bucket.add_outcome(value)
        self.cumulative.outcomes += 1
        if value > 0.0:
            self.cumulative.conversions += 1

    def is_idle(self, now: float) -> bool:
        return self.rings.coarse.is_idle(now, IDLE_S)


class SeriesTable:
    """At most `max_series` series; idle ones make room for new ones, and when none is idle
    a new series is refused (its events are dropped and counted by the caller). At most
    `max_history_series` of them (default: all) keep their steps over the hour."""

    def __init__(
        self, max_series: int, alpha: float, max_bins: int, max_history_series: int | None = None
    ) -> None:
        self.max_series = max_series
        self.alpha = alpha
        self.max_bins = max_bins
        self.histories = HistoryPool(
            max_series if max_history_series is None else max_history_series
        )
        self._series: dict[SeriesKey, Series] = {}
        self._last_scan = -float("inf")

    def __len__(self) -> int:
        return len(self._series)

    def __iter__(self) -> Iterator[Series]:
        return iter(list(self._series.values()))

    def get(self, key: SeriesKey) -> Series | None:
        return self._series.get(key)

    def get_or_create(self, key: SeriesKey, now: float) -> Series | None:
        series = self._series.get(key)
        if series is not None:
            return series
        if len(self._series) >= self.max_series and not self._evict_idle(now):
            return None
        series = self._series[key] = Series(key, self.alpha, self.max_bins, self.histories)
        return series

    def _evict_idle(self, now: float) -> bool:
        if now - self._last_scan < RESCAN_S:
            return False
        self._last_scan = now
        idle = [key for key, series in self._series.items() if series.is_idle(now)]
        for key in idle:
            self.histories.release(self._series.pop(key))
        return bool(idle)

    def matching(self, selector: SeriesKey) -> list[Series]:
        return [s for s in self._series.values() if selector.matches(s.key)]
