"""The quantile sketch: answers within its stated relative accuracy, also once merged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelhub.monitor.sketch import QuantileSketch, merged

QS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def _within(sketch: QuantileSketch, data: np.ndarray) -> None:
    exact = np.quantile(data, QS, method="lower")  # the sketch's rank convention
    for q, estimate, truth in zip(QS, sketch.quantiles(QS), exact, strict=True):
        assert abs(estimate - truth) <= sketch.alpha * truth + 1e-12, (q, estimate, truth)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.lognormal(-3.0, 1.0, n),
        lambda rng, n: rng.exponential(0.05, n),
        lambda rng, n: rng.uniform(0.001, 2.0, n),
        lambda rng, n: np.concatenate(
            [rng.normal(0.01, 0.001, n // 2), rng.normal(1, 0.1, n // 2)]
        ),
    ],
    ids=["lognormal", "exponential", "uniform", "bimodal"],
)
@pytest.mark.parametrize("alpha", [0.01, 0.02])
def test_quantiles_match_numpy_within_relative_accuracy(draw, alpha: float) -> None:
    rng = np.random.default_rng(42)
    data = np.abs(draw(rng, 20_000))
    sketch = QuantileSketch(alpha)
    sketch.extend(data.tolist())
    _within(sketch, data)
    assert sketch.count == data.size
    assert sketch.sum == pytest.approx(float(data.sum()))
    assert sketch.min == data.min() and sketch.max == data.max()


def test_merging_two_sources_is_as_accurate_as_one_sketch() -> None:
    rng = np.random.default_rng(1)
    # Two sources with different latency profiles, e.g. two replicas.
    a = rng.lognormal(-4.0, 0.3, 7_000)
    b = rng.lognormal(-2.0, 0.8, 13_000)
    sa, sb = QuantileSketch(0.01), QuantileSketch(0.01)
    sa.extend(a.tolist())
    sb.extend(b.tolist())
    union = merged([sa, sb], 0.01, 2048)
    _within(union, np.concatenate([a, b]))
    # Merging is exact: the same as having seen every value in one sketch.
    single = QuantileSketch(0.01)
    single.extend(np.concatenate([a, b]).tolist())
    assert union.quantiles(QS) == single.quantiles(QS)
    assert union.count == single.count


def test_zero_values_empty_sketch_and_bad_input() -> None:
    sketch = QuantileSketch(0.01)
    assert math.isnan(sketch.quantile(0.5))
    sketch.extend([0.0, 0.0, 0.0, 1.0])
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(1.0, rel=0.01)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="non-negative"):
            sketch.add(bad)
    with pytest.raises(ValueError, match="different accuracy"):
        sketch.merge(QuantileSketch(0.02))
    with pytest.raises(ValueError, match="quantile"):
        sketch.quantile(1.5)


def test_bins_are_capped_and_only_the_low_tail_loses_accuracy() -> None:
    sketch = QuantileSketch(0.01, max_bins=64)
    data = np.geomspace(1e-6, 1e3, 10_000)
    sketch.extend(data.tolist())
    assert sketch.bin_count <= 64
    # The high quantiles keep their guarantee after the lowest bins collapsed.
    exact = np.quantile(data, [0.99, 1.0], method="lower")
    for estimate, truth in zip(sketch.quantiles([0.99, 1.0]), exact, strict=True):
        assert abs(estimate - truth) <= 0.01 * truth
