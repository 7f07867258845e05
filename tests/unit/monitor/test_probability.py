"""The monitor's p-values and intervals (scipy.stats underneath) against tabulated values
and closed forms."""

from __future__ import annotations

import math

import pytest

from modelhub.monitor.drift import chi2_homogeneity_p
from modelhub.monitor.experiments import two_proportion_z_test, wilson_interval
from modelhub.monitor.probability import ks_p_value, normal_two_sided_p


@pytest.mark.parametrize(
    ("z", "p"),
    [(0.0, 1.0), (1.959963984540054, 0.05), (-2.5758293035489, 0.01), (3.2905267314919, 0.001),
     (1.0, 0.3173105078629141)],
)  # fmt: skip
def test_normal_two_sided_p(z: float, p: float) -> None:
    assert normal_two_sided_p(z) == pytest.approx(p, rel=1e-9)
    assert normal_two_sided_p(z) == pytest.approx(math.erfc(abs(z) / math.sqrt(2.0)), rel=1e-12)


def _stephens(n: float, m: float) -> float:
    effective = math.sqrt(n * m / (n + m))
    return effective + 0.12 + 0.11 / effective


@pytest.mark.parametrize(
    # The Kolmogorov distribution's upper quantiles (Smirnov's table): P(K > lam) = p.
    ("lam", "p"),
    [(0.5, 0.9639452), (1.0, 0.2699996), (1.358099, 0.05), (1.627624, 0.01)],
)
def test_ks_p_value_at_the_kolmogorov_quantiles(lam: float, p: float) -> None:
    for n, m in ((100, 100), (1000, 40), (5, 7)):
        assert ks_p_value(lam / _stephens(n, m), n, m) == pytest.approx(p, rel=1e-4)


def test_ks_p_value_edges() -> None:
    assert ks_p_value(0.0, 100, 100) == 1.0
    assert ks_p_value(0.3, 0, 100) == 1.0
    assert ks_p_value(0.5, 1000, 1000) < 1e-50
    # The alternating series, summed by hand: 2 Σ (-1)^(k-1) exp(-2 k² lam²).
    lam = 2.0
    series = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 50))
    assert ks_p_value(lam / _stephens(200, 300), 200, 300) == pytest.approx(series, rel=1e-12)


def test_chi2_homogeneity_p_known_values() -> None:
    # 2×2 table [[500, 500], [20, 80]]: Pearson's X² = 32.6087 on 1 df (no Yates
    # correction), p = 1.00843e-8.
    assert chi2_homogeneity_p([500, 500], [20, 80]) == pytest.approx(1.0084304597682e-8, rel=1e-6)
    # 2×3 table [[10, 20, 30], [20, 20, 20]]: X² = 16/3 on 2 df, so p = exp(-X²/2).
    assert chi2_homogeneity_p([10, 20, 30], [20, 20, 20]) == pytest.approx(
        math.exp(-8 / 3), rel=1e-9
    )
    assert chi2_homogeneity_p([500, 500], [50, 50]) == pytest.approx(1.0)
    assert chi2_homogeneity_p([5, 0], [3, 0]) == 1.0  # one bin left: nothing to test
    assert chi2_homogeneity_p([0, 0], [3, 4]) == 1.0  # an empty histogram


def test_wilson_interval_known_values() -> None:
    # Newcombe (1998), Table I: 81/263 → [0.2553, 0.3662]; 15/148 → [0.0624, 0.1605];
    # 0/20 → [0, 0.1611]; 1/29 → [0.0061, 0.1718].
    for (x, n), (lower, upper) in {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }.items():
        got = wilson_interval(x, n)
        assert got == pytest.approx((lower, upper), abs=1e-4)
    # The closed form, at another level.
    x, n, z = 30, 90, 2.5758293035489
    p = x / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(x, n, 0.99) == pytest.approx((center - half, center + half), rel=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_z_test_uses_the_normal_tail() -> None:
    z, p = two_proportion_z_test(200, 1000, 250, 1000)
    assert p == pytest.approx(normal_two_sided_p(z), rel=1e-12)
    assert p == pytest.approx(0.0074189, rel=1e-3)
