"""Distribution functions against tabulated values."""

from __future__ import annotations

import math

import pytest

from modelhub.monitor.probability import chi2_sf, kolmogorov_sf, ks_p_value, normal_two_sided_p


@pytest.mark.parametrize(
    ("statistic", "df", "p"),
    [(3.841458820694124, 1, 0.05), (9.487729036781154, 4, 0.05), (23.20925115, 10, 0.01),
     (0.5, 3, 0.9188914)],
)  # fmt: skip
def test_chi2_sf(statistic: float, df: int, p: float) -> None:
    assert chi2_sf(statistic, df) == pytest.approx(p, rel=2e-3)


@pytest.mark.parametrize(("statistic", "df"), [(0.5, 4), (7.0, 6), (100.0, 50), (30.0, 80)])
def test_chi2_sf_matches_the_closed_form_for_even_df(statistic: float, df: int) -> None:
    half = statistic / 2
    closed = math.exp(-half) * sum(half**i / math.factorial(i) for i in range(df // 2))
    assert chi2_sf(statistic, df) == pytest.approx(closed, rel=1e-9)


@pytest.mark.parametrize(
    ("lam", "p"), [(0.5, 0.9639452), (1.0, 0.2699996), (1.358099, 0.05), (1.627624, 0.01)]
)
def test_kolmogorov_sf(lam: float, p: float) -> None:
    assert kolmogorov_sf(lam) == pytest.approx(p, rel=1e-4)


def test_ks_p_value_and_normal() -> None:
    assert ks_p_value(0.0, 100, 100) == 1.0
    assert ks_p_value(0.5, 1000, 1000) < 1e-50
    assert 0.01 < ks_p_value(0.15, 100, 100) < 0.5
    assert normal_two_sided_p(1.959963984540054) == pytest.approx(0.05)
