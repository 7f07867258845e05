"""The monitor's p-values, from `scipy.stats`: the normal tail of the experiments' z-test,
and the asymptotic p-value of the drift report's two-sample KS statistic."""

from __future__ import annotations

import math

from scipy import stats


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return float(2.0 * stats.norm.sf(abs(z)))


def ks_p_value(statistic: float, n: float, m: float) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic for sample sizes n and m,
    with Stephens' small-sample correction: the Kolmogorov distribution's survival function
    at (√n_e + 0.12 + 0.11/√n_e)·D, n_e = n·m/(n + m)."""
    if n <= 0 or m <= 0:
        return 1.0
    effective = math.sqrt(n * m / (n + m))
    return float(stats.kstwobign.sf((effective + 0.12 + 0.11 / effective) * statistic))
