"""The few distribution functions the monitor's tests need, without scipy: the normal
tail, the chi-squared survival function (regularized upper incomplete gamma) and the
Kolmogorov distribution's survival function."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _gamma_series(a: float, x: float) -> float:
    # Lower regularized gamma P(a, x) by its series; converges fast for x < a + 1.
    term = total = 1.0 / a
    denominator = a
    for _ in range(10_000):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_continued_fraction(a: float, x: float) -> float:
    # Upper regularized gamma Q(a, x) by Lentz's continued fraction; for x >= a + 1.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X chi-squared with `df` degrees of freedom."""
    if df <= 0:
        return 1.0
    if statistic <= 0.0:
        return 1.0
    a, x = df / 2.0, statistic / 2.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_series(a, x))
    return min(1.0, _gamma_continued_fraction(a, x))


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution (the limit of sqrt(n)·D_n)."""
    if lam <= 0.0:
        return 1.0
    if lam < 1.18:
        # The theta-function form converges fast for small lam.
        factor = math.sqrt(2.0 * math.pi) / lam
        w = math.pi**2 / (8.0 * lam * lam)
        cdf = factor * sum(math.exp(-((2 * k - 1) ** 2) * w) for k in range(1, 8))
        return min(1.0, max(0.0, 1.0 - cdf))
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-16:
            break
    return min(1.0, max(0.0, 2.0 * total))


def ks_p_value(statistic: float, n: float, m: float) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic for sample sizes n and m,
    with Stephens' small-sample correction."""
    if n <= 0 or m <= 0:
        return 1.0
    effective = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((effective + 0.12 + 0.11 / effective) * statistic)
