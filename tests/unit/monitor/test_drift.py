"""Drift: same distribution → nothing; +1σ on one feature → that one only; a new category
→ flagged; too few samples → "insufficient data". Plus the statistics underneath."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelhub.common.errors import InvalidArgumentError, NotFoundError
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.drift import (
    PartialThresholds,
    Thresholds,
    binned_ks,
    chi2_homogeneity_p,
    js_distance,
    numeric_drift,
    psi,
)
from modelhub.monitor.events import Value
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.profile import FeatureSample, numeric_profile

from .helpers import event

CATEGORIES = np.array(["card", "transfer", "cash"])
CATEGORY_P = np.array([0.5, 0.3, 0.2])


def _draw(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "amount": rng.normal(100.0, 15.0, n),
        "age": rng.normal(40.0, 10.0, n),
        "hour": rng.uniform(0.0, 24.0, n),
        "channel": rng.choice(CATEGORIES, n, p=CATEGORY_P),
        "score": rng.beta(2.0, 5.0, n),
    }


async def _with_baseline(monitor: Monitor, seed: int = 0) -> None:
    base = _draw(np.random.default_rng(seed), 5_000)
    await monitor.set_baseline(
        "models/fraud",
        1,
        features=[
            FeatureSample("amount", base["amount"].tolist()),
            FeatureSample("age", base["age"].tolist()),
            FeatureSample("hour", base["hour"].tolist()),
            FeatureSample("channel", categories=base["channel"].tolist()),
        ],
        predictions=[FeatureSample("score", base["score"].tolist())],
    )


def _ingest_live(monitor: Monitor, clock: ManualClock, live: dict[str, np.ndarray]) -> None:
    n = len(live["amount"])
    now = clock()
    events = []
    for i in range(n):
        features: list[tuple[str, Value]] = [
            ("amount", float(live["amount"][i])),
            ("age", float(live["age"][i])),
            ("hour", float(live["hour"][i])),
            ("channel", str(live["channel"][i])),
        ]
        events.append(
            event(
                # Spread over the last 20 minutes: every value fits the reservoirs.
                t=now - 1200 + 1200 * i / n,
                features=features,
                predictions=[("score", float(live["score"][i]))],
            )
        )
    assert monitor.ingest(events).accepted == n


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_live_data_from_the_baseline_distribution_does_not_drift(
    monitor: Monitor, clock: ManualClock, seed: int
) -> None:
    await _with_baseline(monitor)
    _ingest_live(monitor, clock, _draw(np.random.default_rng(seed), 2_000))
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.drifted == []
    assert not report.insufficient_data
    assert [f.live_count for f in report.features] == [2_000] * 4
    for feature in report.features:
        assert feature.psi < 0.05 and feature.js_distance < 0.1


async def test_one_sigma_shift_flags_that_feature_only(
    monitor: Monitor, clock: ManualClock
) -> None:
    await _with_baseline(monitor)
    live = _draw(np.random.default_rng(5), 2_000)
    live["age"] = live["age"] + 10.0  # +1 σ
    _ingest_live(monitor, clock, live)
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.drifted == ["age"]
    age = next(f for f in report.features if f.name == "age")
    assert set(age.reasons) == {"psi", "js", "ks"}
    assert age.psi > 0.5
    assert age.ks_statistic > 0.3 and age.ks_p_value < 1e-6
    # Baseline and live histograms over the same bins.
    assert len(age.bin_edges) == len(age.baseline_counts) + 1 == len(age.live_counts) + 1
    assert sum(age.live_counts) == 2_000


async def test_new_category_is_flagged(monitor: Monitor, clock: ManualClock) -> None:
    await _with_baseline(monitor)
    live = _draw(np.random.default_rng(6), 2_000)
    live["channel"][:100] = "crypto"  # 5% of traffic in a category never seen in training
    _ingest_live(monitor, clock, live)
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.drifted == ["channel"]
    channel = next(f for f in report.features if f.name == "channel")
    assert channel.new_categories == ["crypto"]
    assert "new_categories" in channel.reasons
    assert channel.categories[-1] == "crypto" and channel.baseline_counts[-1] == 0.0


async def test_twenty_samples_are_insufficient_not_drift(
    monitor: Monitor, clock: ManualClock
) -> None:
    await _with_baseline(monitor)
    live = _draw(np.random.default_rng(7), 20)
    live["age"] = live["age"] + 30.0  # even a huge shift is not judged on 20 values
    _ingest_live(monitor, clock, live)
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.insufficient_data
    assert report.drifted == []
    assert all(f.insufficient_data and f.live_count == 20 for f in report.features)


async def test_prediction_drift(monitor: Monitor, clock: ManualClock) -> None:
    await _with_baseline(monitor)
    live = _draw(np.random.default_rng(8), 2_000)
    live["score"] = np.random.default_rng(9).beta(5.0, 2.0, 2_000)  # mirrored score
    _ingest_live(monitor, clock, live)
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.drifted == ["prediction:score"]


async def test_thresholds_come_from_defaults_model_config_and_request(
    monitor: Monitor, clock: ManualClock
) -> None:
    await _with_baseline(monitor)
    _ingest_live(monitor, clock, _draw(np.random.default_rng(10), 150))
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.thresholds == Thresholds()  # settings defaults
    assert not report.insufficient_data
    from modelhub.monitor.drift import DriftConfig

    await monitor.update_drift_config(
        DriftConfig("models/fraud", PartialThresholds(min_samples=500, psi=0.3))
    )
    report = await monitor.drift_report("models/fraud", 1, 3600)
    assert report.thresholds.min_samples == 500 and report.thresholds.psi == 0.3
    assert report.insufficient_data
    report = await monitor.drift_report("models/fraud", 1, 3600, PartialThresholds(min_samples=50))
    assert report.thresholds.min_samples == 50 and report.thresholds.psi == 0.3
    with pytest.raises(InvalidArgumentError, match=r"thresholds\.js"):
        await monitor.drift_report("models/fraud", 1, 3600, PartialThresholds(js=2.0))


async def test_no_baseline_is_not_found_with_a_hint(monitor: Monitor) -> None:
    with pytest.raises(NotFoundError, match="SetBaseline"):
        await monitor.drift_report("models/fraud", 9, 3600)


# ------------------------------------------------------------- statistics


def test_psi_and_js_of_identical_and_disjoint_histograms() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert js_distance([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    # PSI by hand: shares (0.5, 0.5) → (0.25, 0.75).
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected)


def test_chi2_homogeneity() -> None:
    assert chi2_homogeneity_p([500, 500], [50, 50]) == pytest.approx(1.0)
    assert chi2_homogeneity_p([500, 500], [20, 80]) < 1e-6


def test_binned_ks_matches_the_exact_statistic_at_the_edges() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 4_000)
    live = rng.normal(0.5, 1, 1_000)
    profile = numeric_profile("x", base.tolist(), bins=20)
    statistic = binned_ks(profile.bin_edges, profile.counts, live.tolist())
    # The exact two-sample statistic evaluated at the same points.
    edges = np.asarray(profile.bin_edges[1:-1])
    exact_at_edges = np.max(
        np.abs(
            np.searchsorted(np.sort(base), edges) / base.size
            - np.searchsorted(np.sort(live), edges) / live.size
        )
    )
    assert statistic == pytest.approx(exact_at_edges)
    # And it stays close to the statistic over all points (a lower bound).
    grid = np.sort(np.concatenate([base, live]))
    exact = np.max(
        np.abs(
            np.searchsorted(np.sort(base), grid, side="right") / base.size
            - np.searchsorted(np.sort(live), grid, side="right") / live.size
        )
    )
    assert statistic <= exact + 1e-12
    assert statistic > exact - 0.03


def test_discrete_numeric_feature_without_drift_is_not_flagged() -> None:
    rng = np.random.default_rng(4)
    base = rng.integers(0, 4, 3_000).astype(float)
    live = rng.integers(0, 4, 1_000).astype(float)
    result = numeric_drift(numeric_profile("n", base.tolist()), live.tolist(), Thresholds())
    assert not result.drifted
    assert result.ks_statistic < 0.05
