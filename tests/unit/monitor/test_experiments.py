"""Experiment reports: Wilson intervals, the two-proportion z-test, and reports built from
synthetic traffic with a known true difference (found at large n, not for equal rates)."""

from __future__ import annotations

import numpy as np
import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.monitor.events import Outcome
from modelhub.monitor.experiments import two_proportion_z_test, wilson_interval
from modelhub.monitor.monitor import Monitor

from .helpers import event


def test_wilson_interval_known_values() -> None:
    # Textbook: 81 successes in 263 trials → [0.2553, 0.3662] (Wilson, 95%).
    lower, upper = wilson_interval(81, 263)
    assert lower == pytest.approx(0.2553, abs=1e-4)
    assert upper == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_z_test_known_value() -> None:
    # 200/1000 vs 250/1000: pooled p = 0.225, z = 0.05 / sqrt(0.225·0.775·0.002) ≈ 2.6774.
    z, p = two_proportion_z_test(200, 1000, 250, 1000)
    assert z == pytest.approx(2.6774, abs=1e-4)
    assert p == pytest.approx(0.00742, abs=1e-4)
    assert two_proportion_z_test(0, 10, 0, 10) == (0.0, 1.0)


def _traffic(monitor: Monitor, rates: dict[str, float], n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events, outcomes = [], []
    for variant, rate in rates.items():
        converted = rng.random(n) < rate
        for i in range(n):
            request_id = f"{variant}-{i}"
            events.append(
                event(
                    0.01 + rng.random() * 0.01,
                    endpoint="endpoints/fraud",
                    variant=variant,
                    version=1 if variant == "champion" else 2,
                    request_id=request_id,
                )
            )
            # Conversions are reported; non-conversions mostly are not (as in real life).
            if converted[i]:
                outcomes.append(Outcome(request_id, 1.0))
            elif i % 3 == 0:
                outcomes.append(Outcome(request_id, 0.0))
    assert monitor.ingest(events).accepted == len(events)
    assert monitor.record_outcomes(outcomes).attributed == len(outcomes)


async def test_known_difference_is_significant_at_large_n(monitor: Monitor) -> None:
    _traffic(monitor, {"champion": 0.10, "challenger": 0.12}, n=20_000, seed=1)
    report = monitor.experiment_report("endpoints/fraud", 3600, 0.05)
    by_name = {v.variant: v for v in report.variants}
    for name, rate in (("champion", 0.10), ("challenger", 0.12)):
        variant = by_name[name]
        assert variant.requests == 20_000
        lower, upper = variant.outcome_rate_ci
        assert lower < rate < upper  # the true rate lies in the 95% interval
        assert variant.outcome_rate == pytest.approx(variant.conversions / 20_000)
    assert by_name["challenger"].version == 2
    [comparison] = report.comparisons
    assert comparison.significant and comparison.p_value < 0.001
    rates = {v.variant: v.outcome_rate for v in report.variants}
    assert comparison.difference == pytest.approx(
        rates[comparison.variant_b] - rates[comparison.variant_a]
    )
    assert abs(comparison.difference) == pytest.approx(0.02, abs=0.01)


def test_false_positive_rate_is_alpha_and_power_is_high() -> None:
    """Over many simulated experiments: equal rates are significant about 5% of the time
    (the test's level), a 10% vs 12% difference at n = 20 000 almost always."""
    rng = np.random.default_rng(0)
    n, runs = 5_000, 2_000
    equal = rng.binomial(n, 0.10, size=(runs, 2))
    false_positives = np.mean(
        [two_proportion_z_test(int(a), n, int(b), n)[1] < 0.05 for a, b in equal]
    )
    assert 0.035 < false_positives < 0.065
    n = 20_000
    different = zip(rng.binomial(n, 0.10, 500), rng.binomial(n, 0.12, 500), strict=True)
    power = np.mean([two_proportion_z_test(int(a), n, int(b), n)[1] < 0.05 for a, b in different])
    assert power > 0.99


# Fixed seeds (deterministic); the rate of false positives is checked above.
@pytest.mark.parametrize("seed", [4, 6, 8])
async def test_equal_rates_are_not_significant(monitor: Monitor, seed: int) -> None:
    _traffic(monitor, {"champion": 0.10, "challenger": 0.10}, n=5_000, seed=seed)
    [comparison] = monitor.experiment_report("endpoints/fraud", 3600, 0.05).comparisons
    assert not comparison.significant
    assert comparison.p_value > 0.05


async def test_small_difference_at_small_n_is_not_significant(monitor: Monitor) -> None:
    _traffic(monitor, {"champion": 0.10, "challenger": 0.12}, n=300, seed=5)
    [comparison] = monitor.experiment_report("endpoints/fraud", 3600, 0.05).comparisons
    assert not comparison.significant


async def test_report_prefers_the_routers_view_and_validates(monitor: Monitor) -> None:
    routed = {"endpoint": "endpoints/fraud", "variant": "a", "request_id": "x"}
    monitor.ingest([event(source="router", **routed), event(source="inference", **routed)])
    report = monitor.experiment_report("endpoints/fraud", 3600, 0.05)
    assert [v.requests for v in report.variants] == [1]
    with pytest.raises(InvalidArgumentError, match="endpoint"):
        monitor.experiment_report("fraud", 3600, 0.05)
    with pytest.raises(InvalidArgumentError, match="alpha"):
        monitor.experiment_report("endpoints/fraud", 3600, 0.9)
