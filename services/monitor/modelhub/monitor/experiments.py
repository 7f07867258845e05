"""Experiment reports: per-variant outcome rates of an endpoint with Wilson 95% confidence
intervals, and a pooled two-proportion z-test between every pair of variants."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from modelhub.monitor.probability import normal_two_sided_p
from modelhub.monitor.stats import LatencySummary, WindowStats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: unlike the normal (Wald) interval it stays
    inside [0, 1] and keeps its coverage at rates near 0 or 1 and at small n."""
    if n <= 0:
        return 0.0, 1.0
    test = stats.binomtest(min(max(successes, 0), n), n)
    interval = test.proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of p2 - p1: (z, two-sided p-value)."""
    if n1 <= 0 or n2 <= 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if variance <= 0.0:
        # Both rates 0 or both 1: no evidence of a difference.
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / math.sqrt(variance)
    return z, normal_two_sided_p(z)


@dataclass(frozen=True, slots=True)
class VariantReport:
    variant: str
    model: str
    version: int
    requests: int
    errors: int
    error_rate: float
    latency: LatencySummary
    outcomes: int
    conversions: int
    outcome_rate: float
    outcome_rate_ci: tuple[float, float]
    outcome_mean: float


@dataclass(frozen=True, slots=True)
class VariantComparison:
    variant_a: str
    variant_b: str
    difference: float
    z_score: float
    p_value: float
    significant: bool


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    endpoint: str
    window_s: int
    alpha: float
    variants: list[VariantReport]
    comparisons: list[VariantComparison]


@dataclass(frozen=True, slots=True)
class VariantData:
    """One variant's merged window and the version that served most of it."""

    variant: str
    model: str
    version: int
    stats: WindowStats


def experiment_report(
    endpoint: str, window_s: int, alpha: float, variants: Sequence[VariantData]
) -> ExperimentReport:
    """Variant reports (most requests first) and every pairwise comparison."""
    ordered = sorted(variants, key=lambda v: (-v.stats.requests, v.variant))
    reports = [
        VariantReport(
            variant=v.variant,
            model=v.model,
            version=v.version,
            requests=v.stats.requests,
            errors=v.stats.errors,
            error_rate=v.stats.error_rate,
            latency=LatencySummary.of(v.stats.latency),
            outcomes=v.stats.outcomes,
            conversions=v.stats.conversions,
            outcome_rate=v.stats.outcome_rate,
            outcome_rate_ci=wilson_interval(v.stats.conversions, v.stats.requests),
            outcome_mean=v.stats.outcome_mean,
        )
        for v in ordered
    ]
    comparisons = []
    for a, b in itertools.combinations(reports, 2):
        z, p = two_proportion_z_test(a.conversions, a.requests, b.conversions, b.requests)
        comparisons.append(
            VariantComparison(
                variant_a=a.variant,
                variant_b=b.variant,
                difference=b.outcome_rate - a.outcome_rate,
                z_score=z,
                p_value=p,
                significant=p < alpha,
            )
        )
    return ExperimentReport(endpoint, window_s, alpha, reports, comparisons)
