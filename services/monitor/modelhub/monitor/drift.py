"""Drift of live feature and output values against a baseline profile.

Per feature, over the baseline's bins (numeric) or categories (categorical):
- PSI, the population stability index, Σ (l - b)·ln(l / b) over bin shares (empty shares
  floored at 1e-4, the usual smoothing);
- the Jensen–Shannon distance, base 2 (0 identical, 1 disjoint);
- for numeric features, the two-sample Kolmogorov–Smirnov statistic and its p-value. The
  baseline keeps a histogram, not raw values, so both CDFs are compared at the bin edges,
  where the baseline's is known exactly (a lower bound of the statistic over raw values,
  with no interpolation error; exact on discrete features binned at their values).

Scores of small samples are noisy: at 100 live values the JS distance of data drawn from
the baseline itself is about 0.13. A score therefore counts only when it passes its
threshold *and* the difference is significant (chi-squared test of homogeneity of the
binned counts for PSI and JS, the KS p-value for KS) at level `p_value`. Categories never
seen in the baseline always count as drift. Fewer than `min_samples` live values are
"insufficient data", never drift.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from modelhub.common.errors import InvalidArgumentError
from modelhub.monitor.probability import ks_p_value
from modelhub.monitor.profile import NUMERIC, DataProfile, FeatureProfile, bin_counts

_SHARE_FLOOR = 1e-4
PREDICTION_PREFIX = "prediction:"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a feature drifts (see the module docstring)."""

    psi: float = 0.2
    js: float = 0.1
    ks: float = 0.1
    min_samples: int = 100
    p_value: float = 0.01

    def overridden(self, other: PartialThresholds | None) -> Thresholds:
        """These thresholds with the non-zero fields of `other` taking precedence."""
        if other is None:
            return self
        return replace(
            self,
            psi=other.psi or self.psi,
            js=other.js or self.js,
            ks=other.ks or self.ks,
            min_samples=other.min_samples or self.min_samples,
            p_value=other.p_value or self.p_value,
        )


@dataclass(frozen=True, slots=True)
class PartialThresholds:
    """Thresholds where 0 means "not set here": per-model settings, request overrides."""

    psi: float = 0.0
    js: float = 0.0
    ks: float = 0.0
    min_samples: int = 0
    p_value: float = 0.0

    def validate(self, path: str) -> None:
        """INVALID_ARGUMENT naming the first bad field, or nothing."""
        limits = (
            ("psi", self.psi, math.inf, ""),
            ("js", self.js, 1.0, " at most 1"),
            ("ks", self.ks, 1.0, " at most 1"),
            ("p_value", self.p_value, 1.0 - 1e-12, " below 1"),
        )
        for name, value, upper, limit in limits:
            if not (math.isfinite(value) and 0.0 <= value <= upper):
                raise InvalidArgumentError(
                    f"{path}.{name} must be 0 (use the default) or a positive number{limit}, "
                    f"got {value}",
                    field=f"{path}.{name}",
                )
        if self.min_samples < 0:
            raise InvalidArgumentError(
                f"{path}.min_samples must be 0 (default) or positive, got {self.min_samples}",
                field=f"{path}.min_samples",
            )


@dataclass(slots=True)
class FeatureDrift:
    """Drift of one feature or output."""

    name: str
    kind: str
    live_count: int
    psi: float = 0.0
    js_distance: float = 0.0
    ks_statistic: float = 0.0
    ks_p_value: float = 1.0
    chi2_p_value: float = 1.0
    drifted: bool = False
    insufficient_data: bool = False
    bin_edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    baseline_counts: list[float] = field(default_factory=list)
    live_counts: list[float] = field(default_factory=list)
    new_categories: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DriftReport:
    """Drift of every baseline feature and output of one model version."""

    model: str
    version: int
    window_s: int
    thresholds: Thresholds
    baseline_origin: str
    time: float
    features: list[FeatureDrift]
    predictions: list[FeatureDrift]

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted] + [
            PREDICTION_PREFIX + f.name for f in self.predictions if f.drifted
        ]

    @property
    def insufficient_data(self) -> bool:
        judged = [f for f in (*self.features, *self.predictions) if not f.insufficient_data]
        return not judged

    def max_score(self, score: str) -> float | None:
        """Largest `psi`, `js_distance` or `ks_statistic` over the judged entries."""
        values = [
            getattr(f, score)
            for f in (*self.features, *self.predictions)
            if not f.insufficient_data
        ]
        return max(values) if values else None


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(baseline_counts: ArrayLike, live_counts: ArrayLike) -> float:
    """Population stability index of two histograms over the same bins."""
    b = np.maximum(_shares(np.asarray(baseline_counts, dtype=np.float64)), _SHARE_FLOOR)
    live = np.maximum(_shares(np.asarray(live_counts, dtype=np.float64)), _SHARE_FLOOR)
    return float(np.sum((live - b) * np.log(live / b)))


def js_distance(p_counts: ArrayLike, q_counts: ArrayLike) -> float:
    """Jensen–Shannon distance (square root of the divergence), base 2, in [0, 1]."""
    p = _shares(np.asarray(p_counts, dtype=np.float64))
    q = _shares(np.asarray(q_counts, dtype=np.float64))
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    divergence = 0.5 * kl(p) + 0.5 * kl(q)
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def chi2_homogeneity_p(baseline_counts: ArrayLike, live_counts: ArrayLike) -> float:
    """p-value of the chi-squared test that both histograms come from one distribution."""
    table = np.vstack(
        [np.asarray(baseline_counts, dtype=np.float64), np.asarray(live_counts, dtype=np.float64)]
    )
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(rows <= 0):
        return 1.0
    # Pearson's statistic as it is (no Yates correction, also with two bins).
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def binned_ks(edges: ArrayLike, baseline_counts: ArrayLike, live: ArrayLike) -> float:
    """KS statistic between the baseline histogram's CDF and the live values' empirical CDF,
    compared at the bin edges (bins [e_i, e_i+1), the last one closed)."""
    edge_array = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(baseline_counts, dtype=np.float64)
    sorted_live = np.sort(np.asarray(live, dtype=np.float64))
    m = len(sorted_live)
    # Share strictly below each edge; at the last edge, share at or below it.
    base_cdf = np.concatenate([[0.0], np.cumsum(counts)[:-1] / counts.sum(), [1.0]])
    live_below = np.searchsorted(sorted_live, edge_array[:-1], side="left")
    live_last = np.searchsorted(sorted_live, edge_array[-1:], side="right")
    live_cdf = np.concatenate([live_below, live_last]) / m
    return float(np.max(np.abs(base_cdf - live_cdf)))


def _baseline_size(profile: FeatureProfile) -> float:
    # Profiles may carry normalized counts; `count` then says how many observations.
    return float(profile.count) if profile.count > 0 else float(sum(profile.counts))


def _number_as_category(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _numbers_of(categories: Sequence[str]) -> list[float]:
    out: list[float] = []
    for category in categories:
        try:
            value = float(category)
        except ValueError:
            continue
        if math.isfinite(value):
            out.append(value)
    return out


def _judge(result: FeatureDrift, thresholds: Thresholds) -> None:
    significant_bins = result.chi2_p_value < thresholds.p_value
    if result.psi > thresholds.psi and significant_bins:
        result.reasons.append("psi")
    if result.js_distance > thresholds.js and significant_bins:
        result.reasons.append("js")
    if result.ks_statistic > thresholds.ks and result.ks_p_value < thresholds.p_value:
        result.reasons.append("ks")
    if result.new_categories:
        result.reasons.append("new_categories")
    result.drifted = bool(result.reasons)


def numeric_drift(
    profile: FeatureProfile, live: Sequence[float], thresholds: Thresholds
) -> FeatureDrift:
    """Drift of numeric live values against a NUMERIC profile."""
    live_counts = bin_counts(profile.bin_edges, live)
    result = FeatureDrift(
        name=profile.name,
        kind=NUMERIC,
        live_count=len(live),
        bin_edges=list(profile.bin_edges),
        baseline_counts=list(profile.counts),
        live_counts=live_counts.tolist(),
    )
    if len(live) < thresholds.min_samples:
        result.insufficient_data = True
        return result
    result.psi = psi(profile.counts, live_counts)
    result.js_distance = js_distance(profile.counts, live_counts)
    result.chi2_p_value = chi2_homogeneity_p(
        _scaled(profile.counts, _baseline_size(profile)), live_counts
    )
    result.ks_statistic = binned_ks(profile.bin_edges, profile.counts, live)
    result.ks_p_value = ks_p_value(result.ks_statistic, _baseline_size(profile), len(live))
    _judge(result, thresholds)
    return result


def _scaled(counts: Sequence[float], size: float) -> np.ndarray:
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array * (size / total) if total > 0 else array


def categorical_drift(
    profile: FeatureProfile, live: Sequence[str], thresholds: Thresholds
) -> FeatureDrift:
    """Drift of categorical live values against a CATEGORICAL profile."""
    seen = Counter(live)
    known = set(profile.categories)
    new = sorted((c for c in seen if c not in known), key=lambda c: (-seen[c], c))
    categories = [*profile.categories, *new]
    baseline_counts = [*profile.counts, *([0.0] * len(new))]
    live_counts = [float(seen.get(c, 0)) for c in categories]
    result = FeatureDrift(
        name=profile.name,
        kind=profile.kind,
        live_count=len(live),
        categories=categories,
        baseline_counts=baseline_counts,
        live_counts=live_counts,
        new_categories=new,
    )
    if len(live) < thresholds.min_samples:
        result.insufficient_data = True
        result.new_categories = []
        return result
    result.psi = psi(baseline_counts, live_counts)
    result.js_distance = js_distance(baseline_counts, live_counts)
    result.chi2_p_value = chi2_homogeneity_p(
        _scaled(baseline_counts, _baseline_size(profile)), live_counts
    )
    _judge(result, thresholds)
    return result


def feature_drift(
    profile: FeatureProfile,
    numbers: Sequence[float],
    categories: Sequence[str],
    thresholds: Thresholds,
) -> FeatureDrift:
    """Drift of one feature, whichever way its live values arrived (numbers for a
    categorical feature become their labels; parsable categories of a numeric one, their
    numbers)."""
    if profile.kind == NUMERIC:
        return numeric_drift(profile, [*numbers, *_numbers_of(categories)], thresholds)
    return categorical_drift(
        profile, [*categories, *(_number_as_category(x) for x in numbers)], thresholds
    )


LiveValues = Callable[[str, str], tuple[list[float], list[str]]]


def drift_report(
    *,
    model: str,
    version: int,
    window_s: int,
    baseline: DataProfile,
    baseline_origin: str,
    live: LiveValues,
    thresholds: Thresholds,
    now: float,
) -> DriftReport:
    """Drift of every feature and output of `baseline`; `live(group, name)` gives the live
    numbers and categories of one feature ("features" or "predictions" group)."""
    features = [feature_drift(p, *live("features", p.name), thresholds) for p in baseline.features]
    predictions = [
        feature_drift(p, *live("predictions", p.name), thresholds) for p in baseline.predictions
    ]
    return DriftReport(
        model=model,
        version=version,
        window_s=window_s,
        thresholds=thresholds,
        baseline_origin=baseline_origin,
        time=now,
        features=features,
        predictions=predictions,
    )


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Per-model thresholds (zero fields: server defaults)."""

    model: str
    thresholds: PartialThresholds
    update_time: float = 0.0
