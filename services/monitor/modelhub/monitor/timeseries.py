"""Live traffic over time (`MonitorService.QueryTimeSeries`): requests, errors and latency
quantiles per step, for the last hour, in small, fixed memory.

Each series that keeps history holds one `History`: a ring of HISTORY_SLOTS 10-second steps
(the hour and the step in progress) in arrays allocated once and recycled as the ring
turns. A step is its request and error counts (uint32), the least and greatest latency
(float32), and a histogram of its latencies over HISTORY_BINS fixed, log-spaced bins from
10 µs to 100 s (uint16 counts; a step whose bin would overflow halves its histogram and
remembers the scale, so the counts stay proportional). That is HISTORY_BYTES (77 KiB)
per series whatever the traffic, and at most `max_history_series` series hold one
(`HistoryPool`): 2,000 series take about 150 MiB.

A query adds the steps of the series it selects into points of `step` seconds (a multiple
of 10), aligned on multiples of the step in Unix time; steps without traffic are points of
zero requests. A point's quantile is read from its histogram: the bin of the order
statistic (numpy's `quantile(..., method="lower")`), narrowed to the point's least and
greatest latency, and a position inside it from a density that varies linearly with the
neighbouring bins. The answer lies in the same bin as the exact order statistic (always,
but for steps whose histogram was halved, where ranks are approximate):
for latencies from 10 µs to 100 s its relative error is below HISTORY_MAX_ERROR (18 %, one
bin); outside that range it lies between the least and greatest latency of the bin.
Measured against numpy on lognormal latencies (tests/unit/monitor/test_history.py):
with 5,000 requests per point, p50 within 0.1–0.3 % (median; at most 1.2 %) and p99
within 0.6–1.1 % (at most 4 %); with 400, about 0.7 % and 1.5 % (one point in 20 beyond
2.5 % and 5.5 %); with 20, 2–3.5 % and up to 11 %, where one request more or less moves
the exact p99 further than that.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import version_number
from modelhub.monitor.events import check_endpoint_name, check_model_name

HISTORY_STEP_S = 10
MAX_WINDOW_S = 3600
# The hour, plus the step in progress.
HISTORY_SLOTS = MAX_WINDOW_S // HISTORY_STEP_S + 1
HISTORY_BINS = 96
HISTORY_MIN_S = 1e-5
HISTORY_MAX_S = 100.0
_LOG_MIN = math.log(HISTORY_MIN_S)
_LOG_RATIO = (math.log(HISTORY_MAX_S) - _LOG_MIN) / HISTORY_BINS
_INV_LOG_RATIO = 1.0 / _LOG_RATIO
# A bin's upper edge over its lower one (1.183): the bound of a quantile's relative error.
HISTORY_BIN_RATIO = math.exp(_LOG_RATIO)
HISTORY_MAX_ERROR = HISTORY_BIN_RATIO - 1.0
# Bin b holds [lower[b], upper[b]); the first also holds what is faster than 10 µs, the
# last what is slower than 100 s.
_EDGES = np.exp(_LOG_MIN + _LOG_RATIO * np.arange(HISTORY_BINS + 1))
_LOWER = np.concatenate(([0.0], _EDGES[1:-1]))
_UPPER = np.concatenate((_EDGES[1:-1], [np.inf]))
_COUNT_MAX = 0xFFFF
# Latencies are kept as float32: clamp what float32 cannot hold.
_LATENCY_CAP = 1e30
HISTORY_BYTES = HISTORY_SLOTS * (8 + 4 + 4 + 4 + 4 + 1 + 2 * HISTORY_BINS)
DEFAULT_STEP_S = 10
DEFAULT_WINDOW_S = 3600
# A full pool looks for histories that hold nothing of the last hour at most this often.
RESCAN_STEPS = 1

Floats = npt.NDArray[np.float64]


def latency_bin(latency_s: float) -> int:
    """The histogram bin of a latency."""
    if not latency_s > HISTORY_MIN_S:
        return 0
    return min(int((math.log(latency_s) - _LOG_MIN) * _INV_LOG_RATIO), HISTORY_BINS - 1)


class Steps:
    """Steps of one or more histories added together, in step order."""

    __slots__ = ("errors", "high", "low", "requests", "weights")

    def __init__(self, count: int) -> None:
        self.requests = np.zeros(count, np.int64)
        self.errors = np.zeros(count, np.int64)
        self.weights: Floats = np.zeros((count, HISTORY_BINS))
        self.low: Floats = np.full(count, np.inf)
        self.high: Floats = np.full(count, -np.inf)


class History:
    """The last hour of one series in HISTORY_SLOTS steps of 10 seconds, in arrays
    allocated once (HISTORY_BYTES) and recycled as the ring turns. Events are counted in
    `array.array`s (a third of numpy's cost per element); queries read them through numpy
    views (no copy). The histograms are one array of HISTORY_SLOTS × HISTORY_BINS."""

    __slots__ = (
        "_errors",
        "_hist",
        "_max",
        "_min",
        "_requests",
        "_scale",
        "_steps",
        "newest",
    )

    def __init__(self) -> None:
        # Repeating allocates the exact size (building from bytes over-allocates 1/16).
        self._steps = array("q", [-1]) * HISTORY_SLOTS
        self._requests = array("I", [0]) * HISTORY_SLOTS
        self._errors = array("I", [0]) * HISTORY_SLOTS
        self._min = array("f", [0.0]) * HISTORY_SLOTS
        self._max = array("f", [0.0]) * HISTORY_SLOTS
        self._scale = array("B", [0]) * HISTORY_SLOTS
        self._hist = array("H", [0]) * (HISTORY_SLOTS * HISTORY_BINS)
        self.newest = -1  # newest step number recorded

    def clear(self) -> None:
        np.frombuffer(self._steps, np.longlong).fill(-1)
        self.newest = -1

    def record(self, t: float, latency_s: float, status_code: int) -> bool:
        """Count one request at time `t`; False when `t` is older than the ring keeps."""
        step = int(t // HISTORY_STEP_S)
        if step <= self.newest - HISTORY_SLOTS:
            return False
        slot = step % HISTORY_SLOTS
        if self._steps[slot] != step:
            self._start(slot, step)
        self._requests[slot] += 1
        if status_code:
            self._errors[slot] += 1
        # The bin (as in latency_bin, inlined: this runs for every event), then the extremes.
        if latency_s > HISTORY_MIN_S:
            index = int((math.log(latency_s) - _LOG_MIN) * _INV_LOG_RATIO)
            if index >= HISTORY_BINS:
                index = HISTORY_BINS - 1
                latency_s = _LATENCY_CAP if latency_s > _LATENCY_CAP else latency_s
        else:
            index = 0
        if latency_s < self._min[slot]:
            self._min[slot] = latency_s
        if latency_s > self._max[slot]:
            self._max[slot] = latency_s
        index += slot * HISTORY_BINS
        hist = self._hist
        if hist[index] == _COUNT_MAX:
            self._halve(slot)
        hist[index] += 1
        return True

    def _start(self, slot: int, step: int) -> None:
        self._steps[slot] = step
        self._requests[slot] = 0
        self._errors[slot] = 0
        self._min[slot] = math.inf
        self._max[slot] = -math.inf
        self._scale[slot] = 0
        self._histograms()[slot] = 0
        self.newest = max(self.newest, step)

    def _halve(self, slot: int) -> None:
        # Rounding up keeps every bin that holds a request non-empty.
        row = self._histograms()[slot]
        row[:] = (row.astype(np.uint32) + 1) >> 1
        self._scale[slot] += 1

    def _histograms(self) -> npt.NDArray[np.uint16]:
        return np.frombuffer(self._hist, np.uint16).reshape(HISTORY_SLOTS, HISTORY_BINS)

    def add_to(self, total: Steps, first_step: int) -> None:
        """Add this history's steps first_step, first_step + 1, … to `total`."""
        numbers = np.arange(first_step, first_step + len(total.requests))
        slots = numbers % HISTORY_SLOTS
        held = np.frombuffer(self._steps, np.longlong)[slots] == numbers
        if not held.any():
            return
        at = slots[held]
        total.requests[held] += np.frombuffer(self._requests, np.uintc)[at]
        total.errors[held] += np.frombuffer(self._errors, np.uintc)[at]
        scale = np.ldexp(1.0, np.frombuffer(self._scale, np.uint8)[at].astype(np.int32))
        total.weights[held] += self._histograms()[at] * scale[:, None]
        low, high = np.frombuffer(self._min, np.float32), np.frombuffer(self._max, np.float32)
        total.low[held] = np.minimum(total.low[held], low[at])
        total.high[held] = np.maximum(total.high[held], high[at])

    def requests_between(self, start: float, end: float) -> int:
        """Requests of the steps in [start, end)."""
        first = math.ceil(start / HISTORY_STEP_S)
        steps = Steps(max(0, math.ceil(end / HISTORY_STEP_S) - first))
        self.add_to(steps, first)
        return int(steps.requests.sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the objects around them add a few hundred)."""
        arrays = (self._steps, self._requests, self._errors, self._min, self._max)
        return sum(a.itemsize * len(a) for a in (*arrays, self._scale, self._hist))


class HistoryHolder(Protocol):
    """What a pool hands a history to (a series)."""

    history: History | None


class HistoryPool:
    """At most `capacity` histories, handed to series at their first event and taken back
    when the series is dropped, or when the pool is full and a series has recorded
    nothing in the last hour. A series that gets none is left out of time series."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[int, tuple[HistoryHolder, History]] = {}  # by id of the history
        self._free: list[History] = []
        self._allocated = 0
        self._last_scan = -(1 << 62)
        self.refused = 0  # events of series without a history

    def __len__(self) -> int:
        """Histories held by series."""
        return len(self._held)

    @property
    def allocated(self) -> int:
        """Histories in memory (held or free): at most `capacity`."""
        return self._allocated

    def acquire(self, holder: HistoryHolder, t: float) -> History | None:
        """A history for `holder` (set as its `history`), or None when all are taken."""
        if self._free:
            history = self._free.pop()
        elif self._allocated < self.capacity:
            history = History()
            self._allocated += 1
        elif self._reclaim(int(t // HISTORY_STEP_S)):
            history = self._free.pop()
        else:
            self.refused += 1
            return None
        self._held[id(history)] = (holder, history)
        holder.history = history
        return history

    def release(self, holder: HistoryHolder) -> None:
        """Take back `holder`'s history, if it has one from this pool."""
        history = holder.history
        if history is None:
            return
        holder.history = None
        if self._held.pop(id(history), None) is not None:
            history.clear()
            self._free.append(history)

    def _reclaim(self, step: int) -> bool:
        if step - self._last_scan < RESCAN_STEPS:
            return False
        self._last_scan = step
        for holder, history in list(self._held.values()):
            if history.newest <= step - HISTORY_SLOTS:
                self.release(holder)
        return bool(self._free)


@dataclass(frozen=True, slots=True)
class Query:
    """A checked QueryTimeSeries: one endpoint's variants, or one model's versions."""

    endpoint: str
    model: str
    version: int
    window_s: int
    step_s: int

    @classmethod
    def of(cls, endpoint: str, model: str, version: str, window_s: int, step_s: int) -> Query:
        """The query, or INVALID_ARGUMENT saying what to change."""
        if bool(endpoint) == bool(model):
            raise InvalidArgumentError(
                "give either endpoint (`endpoints/{endpoint}`: a series per variant) or model "
                "(`models/{model}`: a series per version), not "
                + ("both" if endpoint else "neither"),
                field="endpoint" if endpoint else "model",
            )
        if endpoint:
            check_endpoint_name(endpoint, "endpoint")
        else:
            check_model_name(model, "model")
        number = 0
        if version:
            if endpoint:
                raise InvalidArgumentError(
                    "version goes with model: an endpoint's series are its variants",
                    field="version",
                )
            number = version_number(version, "version")
        window = window_s or DEFAULT_WINDOW_S
        if not 0 < window <= MAX_WINDOW_S:
            raise InvalidArgumentError(
                f"window_seconds must be 1 to {MAX_WINDOW_S} (0 for {DEFAULT_WINDOW_S}), got "
                f"{window_s}",
                field="window_seconds",
            )
        step = step_s or DEFAULT_STEP_S
        if step < 0 or step % HISTORY_STEP_S or step > max(window, HISTORY_STEP_S):
            raise InvalidArgumentError(
                f"step_seconds must be a multiple of {HISTORY_STEP_S} (the monitor keeps "
                f"{HISTORY_STEP_S}-second steps) up to the window ({window} s), 0 for "
                f"{DEFAULT_STEP_S}; got {step_s}",
                field="step_seconds",
            )
        return cls(endpoint, model, number, window, step)


@dataclass(frozen=True, slots=True)
class Point:
    """What happened during [time, time + step): rates per second over the part of the
    step that has passed (all of it but for the newest point)."""

    time: float
    requests: int
    errors: int
    requests_per_second: float
    errors_per_second: float
    # Seconds; None without requests.
    p50_s: float | None
    p99_s: float | None


@dataclass(frozen=True, slots=True)
class Line:
    """One series of the answer: a variant (endpoint queries) or a version."""

    variant: str
    model: str
    version: int
    points: list[Point]


@dataclass(frozen=True, slots=True)
class TimeSeries:
    series: list[Line]
    step_s: int
    start: float
    end: float


def point_starts(now: float, window_s: int, step_s: int) -> list[float]:
    """The points' start times, oldest first: the newest is the step holding `now`."""
    newest = math.floor(now / step_s) * step_s
    count = max(1, math.ceil(window_s / step_s))
    return [float(newest - (count - 1 - i) * step_s) for i in range(count)]


def quantiles(
    weights: Floats, low: Floats, high: Floats, qs: Sequence[float]
) -> npt.NDArray[np.float64]:
    """Quantiles `qs` of each row of `weights` (counts per HISTORY bin, values within
    [low, high] of the row): an array of rows × len(qs), NaN for empty rows.

    The rank is numpy's `method="lower"` (index floor(q·(n-1))); inside the bin holding it,
    the density is taken to vary linearly in log-latency with slope the difference of the
    two neighbouring bins (so a tail's bin fills from the side of the bulk)."""
    rows = np.arange(len(weights))
    total = weights.sum(axis=1)
    cumulative = np.cumsum(weights, axis=1)
    padded = np.pad(weights, ((0, 0), (1, 1)))
    out = np.full((len(weights), len(qs)), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, q in enumerate(qs):
            rank = np.floor(q * np.maximum(total - 1.0, 0.0))
            b = np.argmax(cumulative > rank[:, None], axis=1)
            count = weights[rows, b]
            # Where in the bin's mass (0…1) the rank falls, and the density's slope.
            mass = np.clip((rank - cumulative[rows, b] + count + 0.5) / count, 0.0, 1.0)
            slope = np.clip((padded[rows, b + 2] - padded[rows, b]) / (2.0 * count), -2.0, 2.0)
            # The position u in the bin where ∫ 1 + slope·(x - ½) over [0, u] = mass.
            linear = 1.0 - slope / 2.0
            root = linear + np.sqrt(np.maximum(linear * linear + 2.0 * slope * mass, 0.0))
            u = np.where(root > 0.0, 2.0 * mass / root, 0.0)
            lo = np.maximum(_LOWER[b], low)
            hi = np.maximum(np.minimum(_UPPER[b], high), lo)
            value = np.where(lo > 0.0, lo * (hi / lo) ** u, lo + (hi - lo) * u)
            out[:, j] = np.where(total > 0.0, value, np.nan)
    return out


def line(
    variant: str,
    model: str,
    version: int,
    histories: Sequence[History | None],
    starts: Sequence[float],
    step_s: int,
    now: float,
) -> Line:
    """The points of the series whose histories are `histories`, added together (series
    without one count as quiet)."""
    per_point = step_s // HISTORY_STEP_S
    steps = Steps(len(starts) * per_point)
    first = int(starts[0]) // HISTORY_STEP_S
    for history in histories:
        if history is not None:
            history.add_to(steps, first)
    shape = (len(starts), per_point)
    requests = steps.requests.reshape(shape).sum(axis=1)
    errors = steps.errors.reshape(shape).sum(axis=1)
    weights = steps.weights.reshape((*shape, HISTORY_BINS)).sum(axis=1)
    low = steps.low.reshape(shape).min(axis=1)
    high = steps.high.reshape(shape).max(axis=1)
    p50_p99 = quantiles(weights, low, high, (0.5, 0.99))
    points = []
    for i, start in enumerate(starts):
        count, failed = int(requests[i]), int(errors[i])
        seconds = min(float(step_s), max(now - start, 1.0))
        p50 = float(p50_p99[i, 0]) if count else None
        p99 = float(p50_p99[i, 1]) if count else None
        points.append(Point(start, count, failed, count / seconds, failed / seconds, p50, p99))
    return Line(variant, model, version, points)


def requests_between(history: History | None, start: float, end: float) -> int:
    """Requests a series' history holds in [start, end) (0 without one)."""
    return 0 if history is None else history.requests_between(start, end)
