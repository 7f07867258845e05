"""The online cost model: arrival rate, batch cost curve, and when holding a batch pays."""

from __future__ import annotations

import pytest

from modelhub.inference.cost_model import ArrivalRate, BatchCostCurve, CostModel, CpuLoad


def test_arrival_rate_tracks_a_steady_stream() -> None:
    rate = ArrivalRate(tau_s=0.5)
    for i in range(4000):  # 2000 rows/s for 2 s
        rate.add(1, i / 2000)
    assert rate.rate(2.0) == pytest.approx(2000, rel=0.05)
    # Decays once arrivals stop.
    assert rate.rate(4.0) < 2000 * 0.05


def test_multi_row_arrivals_count_rows() -> None:
    rate = ArrivalRate(tau_s=0.5)
    for i in range(1000):
        rate.add(4, i / 500)
    assert rate.rate(2.0) == pytest.approx(2000, rel=0.05)


def test_cost_curve_fits_fixed_and_per_row_cost() -> None:
    curve = BatchCostCurve(max_batch_size=64)
    for _ in range(5):
        for rows in (1, 8, 32, 64):
            curve.observe(rows, 0.001 + 0.0001 * rows)
    assert curve.fixed == pytest.approx(0.001, rel=0.01)
    assert curve.per_row == pytest.approx(0.0001, rel=0.01)
    assert curve.predict(16) == pytest.approx(0.0026, rel=0.01)


def test_cost_curve_with_one_size_assumes_no_fixed_cost() -> None:
    curve = BatchCostCurve(max_batch_size=8)
    curve.observe(4, 0.004)
    assert curve.fixed == 0.0
    assert curve.predict(8) == pytest.approx(0.008)


def test_cost_curve_keeps_rare_sizes_and_follows_drift() -> None:
    curve = BatchCostCurve(max_batch_size=64)
    curve.observe(1, 0.001)
    curve.observe(64, 0.002)
    for _ in range(200):  # traffic now runs only size 1, and got slower
        curve.observe(1, 0.0015)
    assert curve.predict(1) == pytest.approx(0.0015, rel=0.05)
    assert curve.per_row > 0  # the size-64 point still anchors the slope


def _model(fixed: float, per_row: float, busy: float = 0.0) -> CostModel:
    cpu = CpuLoad(cpu_clock=lambda: 0.0, clock=lambda: 0.0)
    cpu.value = busy
    model = CostModel(max_batch_size=64, cpu=cpu)
    for _ in range(3):
        model.curve.observe(1, fixed + per_row)
        model.curve.observe(64, fixed + 64 * per_row)
    return model


def _arrivals(model: CostModel, rate: float, until: float = 2.0) -> None:
    steps = int(rate * until)
    for i in range(steps):
        model.arrivals.add(1, i / rate)


def test_no_hold_at_low_load() -> None:
    model = _model(fixed=0.001, per_row=0.00001)
    _arrivals(model, rate=100)  # λ·α = 0.1: a hold cannot pay
    assert model.hold_time(1, 0.0, 0.01, 64, now=2.0) == 0.0


def test_hold_when_more_rows_arrive_during_one_fixed_cost_than_wait() -> None:
    model = _model(fixed=0.004, per_row=0.00001)
    _arrivals(model, rate=2000)  # λ·α = 8 ≫ 1 queued row
    hold = model.hold_time(1, 0.0, 0.01, 64, now=2.0)
    # Δ* = (α − r(1+βλ)/λ)/2 ≈ (4 ms − 0.51 ms)/2
    assert hold == pytest.approx((0.004 - (1 + 0.02) / 2000) / 2, rel=0.1)


def test_hold_never_passes_max_queue_delay_or_a_full_batch() -> None:
    model = _model(fixed=0.004, per_row=0.00001)
    _arrivals(model, rate=2000)
    assert model.hold_time(1, 0.0, 0.0005, 64, now=2.0) <= 0.0005
    assert model.hold_time(1, 0.0009, 0.001, 64, now=2.0) <= 0.0001 + 1e-12
    assert model.hold_time(1, 0.001, 0.001, 64, now=2.0) == 0.0  # oldest is due
    assert model.hold_time(64, 0.0, 0.01, 64, now=2.0) == 0.0  # batch full
    # Filling the last 4 rows takes ~2 ms at 2000 rows/s: no longer hold than that.
    assert model.hold_time(60, 0.0, 0.01, 64, now=2.0) <= 4 / 2000 * 1.1


def test_busy_cpu_makes_holding_pay_for_cheap_runs() -> None:
    idle = _model(fixed=0.0001, per_row=0.000001, busy=0.0)
    saturated = _model(fixed=0.0001, per_row=0.000001, busy=0.95)
    for model in (idle, saturated):
        model.overhead = 0.0001
        _arrivals(model, rate=2000)
    assert idle.hold_time(1, 0.0, 0.005, 64, now=2.0, shares_cpu=True) == 0.0
    assert saturated.hold_time(1, 0.0, 0.005, 64, now=2.0, shares_cpu=True) > 0.0


def test_holds_that_gather_nothing_stop_then_recover() -> None:
    model = _model(fixed=0.004, per_row=0.00001)
    _arrivals(model, rate=2000)
    assert model.hold_time(1, 0.0, 0.01, 64, now=2.0) > 0
    # Closed-loop callers: nothing arrives while the batcher holds.
    model.observe_hold(0.002, 0, now=2.0)
    assert model.hold_time(1, 0.0, 0.01, 64, now=2.0) == 0.0
    # The measurement relaxes back towards λ (the traffic may have changed).
    for i in range(4000, 10000):
        model.arrivals.add(1, i / 2000)
    assert model.hold_time(1, 0.0, 0.01, 64, now=5.0) > 0


def test_cpu_load_measures_busy_fraction() -> None:
    clock = [0.0]
    cpu_time = [0.0]
    load = CpuLoad(cpu_clock=lambda: cpu_time[0], clock=lambda: clock[0], smoothing=1.0)
    clock[0], cpu_time[0] = 0.1, 0.08
    assert load.sample() == pytest.approx(0.8)
