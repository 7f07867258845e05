"""The time-series history: per-step latency histograms (accuracy against numpy, the hard
bound, merging, overflow), the ring of steps in fixed memory, and the pool capping how
many series keep one."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from pydantic import ValidationError

from modelhub.monitor import timeseries
from modelhub.monitor.series import SeriesKey, SeriesTable
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.timeseries import (
    HISTORY_BINS,
    HISTORY_BYTES,
    HISTORY_MAX_ERROR,
    HISTORY_MAX_S,
    HISTORY_MIN_S,
    HISTORY_SLOTS,
    History,
    Point,
    latency_bin,
    line,
    point_starts,
)

T0 = 1_699_999_200.0  # a whole hour: a multiple of every step


def point_of(values: np.ndarray, step_s: int = 10) -> Point:
    """The one point of a history holding `values`, spread over the step."""
    history = History()
    for i, value in enumerate(values.tolist()):
        history.record(T0 + step_s * i / len(values), value, 0)
    (point,) = line("", "", 0, [history], [T0], step_s, T0 + step_s).points
    assert point.requests == len(values)
    return point


def errors_of(point: Point, values: np.ndarray) -> tuple[float, float]:
    assert point.p50_s is not None and point.p99_s is not None
    out = []
    for estimate, q in ((point.p50_s, 0.5), (point.p99_s, 0.99)):
        truth = float(np.quantile(values, q, method="lower"))
        out.append(abs(estimate - truth) / truth)
    return out[0], out[1]


@pytest.mark.parametrize("sigma", [0.2, 0.5, 1.5])
def test_quantiles_of_busy_steps_are_close_to_numpy(sigma: float) -> None:
    # 40 steps of 5,000 lognormal latencies each.
    rng = np.random.default_rng(7)
    p50_errors, p99_errors = [], []
    # Medians such that nearly every latency stays inside the bins' 10 µs to 100 s.
    for mu in np.linspace(np.log(1e-5) + 4 * sigma, np.log(100.0) - 4 * sigma, 40):
        values = rng.lognormal(mu, sigma, 5_000)
        p50, p99 = errors_of(point_of(values), values)
        p50_errors.append(p50)
        p99_errors.append(p99)
    # What the module docstring states: p50 typically under 1 %, p99 1–3 %; never a bin.
    assert np.median(p50_errors) < 0.005 and max(p50_errors) < 0.02
    assert np.median(p99_errors) < 0.015 and max(p99_errors) < 0.06
    assert max(p50_errors + p99_errors) < HISTORY_MAX_ERROR


def test_quantiles_never_leave_the_bin_of_the_exact_answer() -> None:
    # Within the histogram's range the relative error is below one bin, for any data.
    rng = np.random.default_rng(3)
    cases = [
        rng.lognormal(-5, 2.5, 30),  # wide and few
        np.concatenate([np.full(90, 0.002), np.full(10, 4.0)]),  # bimodal
        np.array([0.123]),  # one request
        rng.choice([0.01, 0.0101, 0.5], 7),  # ties
        np.array([HISTORY_MIN_S, HISTORY_MAX_S]),  # the range's ends
    ]
    cases += [rng.lognormal(rng.uniform(-10, 2), rng.uniform(0.05, 3), n) for n in range(2, 60)]
    for values in cases:
        values = np.clip(values, HISTORY_MIN_S, HISTORY_MAX_S)
        p50, p99 = errors_of(point_of(values), values)
        assert max(p50, p99) <= HISTORY_MAX_ERROR + 1e-6, values


def test_outside_the_range_answers_stay_between_the_extremes() -> None:
    rng = np.random.default_rng(4)
    fast = np.concatenate([rng.uniform(1e-7, 5e-6, 60), rng.uniform(2e-5, 1e-4, 40)])
    point = point_of(fast)
    assert point.p50_s is not None and point.p99_s is not None
    # The 60 fastest are below 10 µs: p50 is somewhere in the first bin (under 12 µs).
    assert fast.min() <= point.p50_s < HISTORY_MIN_S * (1 + HISTORY_MAX_ERROR)
    assert errors_of(point, fast)[1] <= HISTORY_MAX_ERROR
    slow = rng.uniform(150.0, 9000.0, 50)
    point = point_of(slow)
    assert point.p50_s is not None and point.p99_s is not None
    assert slow.min() <= point.p50_s <= point.p99_s <= slow.max()


def test_constant_and_zero_latencies_are_exact() -> None:
    assert point_of(np.full(25, 0.02)).p99_s == pytest.approx(0.02, rel=1e-6)
    zeros = point_of(np.zeros(10))
    assert (zeros.p50_s, zeros.p99_s) == (0.0, 0.0)
    # Mostly zeros: both lie in the first bin, no further than the greatest value.
    mostly = point_of(np.concatenate([np.zeros(99), [HISTORY_MIN_S / 2]]))
    assert mostly.p50_s is not None and mostly.p99_s is not None
    assert 0.0 <= mostly.p50_s <= mostly.p99_s <= HISTORY_MIN_S / 2


def test_bins_are_log_spaced_from_10_us_to_100_s() -> None:
    assert latency_bin(0.0) == latency_bin(HISTORY_MIN_S) == 0
    assert latency_bin(HISTORY_MIN_S * 1.01) == 0
    assert latency_bin(HISTORY_MIN_S * (1 + HISTORY_MAX_ERROR) * 1.001) == 1
    assert latency_bin(99.0) == HISTORY_BINS - 1 == latency_bin(1e300)
    assert latency_bin(float("nan")) == 0


def test_points_of_several_steps_and_series_add_up() -> None:
    rng = np.random.default_rng(5)
    a, b = History(), History()
    parts = []
    for step in range(6):
        values = rng.lognormal(-4 + step * 0.3, 0.4, 300)
        target = a if step % 2 else b
        for i, value in enumerate(values.tolist()):
            target.record(T0 + 10 * step + i / 40, value, i % 10 == 0)
        parts.append(values)
    (point,) = line("", "", 0, [a, None, b], [T0], 60, T0 + 30).points
    everything = np.concatenate(parts)
    assert (point.requests, point.errors) == (1800, 180)
    # The newest point: rates over the 30 s that have passed.
    assert point.requests_per_second == pytest.approx(1800 / 30)
    p50, p99 = errors_of(point, everything)
    assert p50 < 0.02 and p99 < 0.05
    assert a.requests_between(T0, T0 + 60) == 900 == b.requests_between(T0, T0 + 60)
    assert a.requests_between(T0 + 20, T0 + 40) == 300


def test_a_step_past_65535_in_one_bin_halves_and_keeps_its_weight() -> None:
    # 150,000 requests at 1 ms in one step (its histogram is halved twice) and 50,000 at
    # 100 ms in the next: a minute's p50 is 1 ms and its p99 100 ms only if the halved step
    # still weighs three times the other.
    history = History()
    for i in range(150_000):
        history.record(T0 + i / 20_000, 0.001, 0)
    for i in range(50_000):
        history.record(T0 + 10 + i / 20_000, 0.1, 0)
    (point,) = line("", "", 0, [history], [T0], 60, T0 + 60).points
    assert point.requests == 200_000
    assert point.p50_s == pytest.approx(0.001, rel=HISTORY_MAX_ERROR)
    assert point.p99_s == pytest.approx(0.1, rel=HISTORY_MAX_ERROR)
    steps = line("", "", 0, [history], point_starts(T0 + 55, 60, 10), 10, T0 + 60).points
    assert [p.requests for p in steps] == [150_000, 50_000, 0, 0, 0, 0]


def test_the_ring_keeps_the_hour_in_fixed_memory() -> None:
    tracemalloc.start()
    try:
        history = History()
        # Two hours, a request every 2 s, latencies over the whole range of bins.
        for i in range(3600):
            history.record(T0 + 2 * i, 10.0 ** ((i % 70) / 10 - 5), i % 7 == 0)
        # Only what this test and the history's module hold: other threads of the test
        # process (the xdist channel) allocate meanwhile.
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, timeseries.__file__), tracemalloc.Filter(True, __file__)]
        )
    finally:
        tracemalloc.stop()
    held = sum(stat.size for stat in snapshot.statistics("filename"))
    assert history.nbytes == HISTORY_BYTES < 80 * 1024
    # The arrays, their 7 objects and the history's: nothing grows with the traffic.
    assert HISTORY_BYTES <= held < HISTORY_BYTES + 1024
    # The oldest step still held is the hour's first; older events are refused.
    now = T0 + 7198
    assert not history.record(now - 10 * HISTORY_SLOTS, 0.01, 0)
    assert history.record(now - 10 * (HISTORY_SLOTS - 1), 0.01, 0)
    points = line("", "", 0, [history], point_starts(now, 3600, 600), 600, now).points
    assert [p.requests for p in points] == [300] * 6
    # Recycled steps hold nothing of their old time; the oldest kept holds 5 + 1.
    assert history.requests_between(T0, T0 + 3590) == 0
    assert history.requests_between(T0 + 3590, T0 + 3600) == 6


def test_the_pool_caps_series_with_history() -> None:
    table = SeriesTable(10, 0.01, 256, max_history_series=2)
    pool = table.histories
    for version in (1, 2, 3):
        series = table.get_or_create(SeriesKey("models/m", version), T0)
        assert series is not None
        series.record(T0, 0.01, 0, 0.0, 0.0, [], 8)
    keys = {s.key.version: s.history for s in table}
    assert keys[1] is not None and keys[2] is not None and keys[3] is None
    assert (len(pool), pool.allocated, pool.refused) == (2, 2, 1)
    # Within the hour nothing can be reclaimed: version 3 is still refused.
    later = table.get(SeriesKey("models/m", 3))
    assert later is not None
    later.record(T0 + 3000, 0.01, 0, 0.0, 0.0, [], 8)
    assert later.history is None and pool.refused == 2
    # An hour after their last event, versions 1 and 2 give theirs up to version 3.
    later.record(T0 + 3620, 0.01, 0, 0.0, 0.0, [], 8)
    assert later.history is not None and pool.allocated == 2 and len(pool) == 1
    assert later.history.requests_between(T0, T0 + 3630) == 1


def test_dropped_series_give_their_history_back() -> None:
    table = SeriesTable(2, 0.01, 256)
    assert table.histories.capacity == 2
    for version in (1, 2):
        series = table.get_or_create(SeriesKey("models/m", version), T0)
        assert series is not None
        series.record(T0, 0.01, 0, 0.0, 0.0, [], 8)
    # Two hours later both are idle: a new series takes the place (and a history) of one.
    new = table.get_or_create(SeriesKey("models/m", 3), T0 + 7200)
    assert new is not None and len(table) == 1
    new.record(T0 + 7200, 0.01, 0, 0.0, 0.0, [], 8)
    assert new.history is not None
    assert (len(table.histories), table.histories.allocated) == (1, 2)


def test_no_history_when_the_cap_is_zero() -> None:
    table = SeriesTable(5, 0.01, 256, max_history_series=0)
    series = table.get_or_create(SeriesKey("models/m", 1), T0)
    assert series is not None
    assert series.record(T0, 0.01, 0, 0.0, 0.0, [], 8)  # still counted in the windows
    assert series.history is None and table.histories.allocated == 0


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MonitorSettings().max_history_series == 2000
    monkeypatch.setenv("MODELHUB_MONITOR_MAX_HISTORY_SERIES", "0")
    assert MonitorSettings().max_history_series == 0
    with pytest.raises(ValidationError, match="max_history_series"):
        MonitorSettings(max_history_series=-1)
