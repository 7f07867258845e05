"""A mergeable quantile sketch for non-negative values (latencies, differences).

DDSketch (Masson, Rim and Lee, VLDB 2019): a value x > 0 lands in bin
k = ceil(log_γ x) with γ = (1 + α) / (1 - α); every value of bin k lies in (γ^(k-1), γ^k],
and the bin's representative 2γ^k / (γ + 1) is within relative error α of each of them.
A quantile is answered by walking the bins to the bin holding the value of that rank, so
the answer is within α (relative) of the exact order statistic — for any data, and for
the union of sketches merged by adding their bin counts (merging loses nothing, which is
what makes figures from several sources or replicas correct once combined).

The rank convention is the order statistic at index floor(q·(n-1)), numpy's
`quantile(..., method="lower")`. Bins live in a dense array of counts from the lowest
to the highest key seen; at most `max_bins` of them are kept, beyond which the lowest
bins are merged (only quantiles in that collapsed low tail lose accuracy).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

import numpy as np

# Values below this count as zero: far under any latency a clock can measure.
MIN_INDEXABLE = 1e-9


class QuantileSketch:
    """DDSketch with relative accuracy `alpha` over non-negative values."""

    __slots__ = (
        "_bins",
        "_gamma",
        "_inv_log_gamma",
        "_offset",
        "alpha",
        "count",
        "max",
        "max_bins",
        "min",
        "sum",
        "zero_count",
    )

    def __init__(self, alpha: float = 0.01, max_bins: int = 2048) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"relative accuracy must be in (0, 1), got {alpha}")
        if max_bins < 2:
            raise ValueError(f"max_bins must be at least 2, got {max_bins}")
        self.alpha = alpha
        self.max_bins = max_bins
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        # Counts of keys _offset, _offset + 1, …; int64 without a Python object per bin.
        self._bins = array("q")
        self._offset = 0
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def __len__(self) -> int:
        return self.count

    @property
    def bin_count(self) -> int:
        """Bins in use (memory is proportional to it)."""
        return len(self._bins)

    def add(self, value: float, weight: int = 1) -> None:
        """Record `value` (non-negative and finite) `weight` times."""
        if not value >= 0.0 or value == math.inf:
            raise ValueError(f"sketch values must be finite and non-negative, got {value}")
        self.count += weight
        self.sum += value * weight
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value < MIN_INDEXABLE:
            self.zero_count += weight
            return
        key = math.ceil(math.log(value) * self._inv_log_gamma)
        bins = self._bins
        if not bins:
            self._offset = key
            bins.append(weight)
            return
        index = key - self._offset
        if index < 0:
            grown = array("q", bytes(8 * -index))
            grown.extend(bins)
            self._bins = bins = grown
            self._offset = key
            index = 0
        elif index >= len(bins):
            bins.extend(array("q", bytes(8 * (index - len(bins) + 1))))
        bins[index] += weight
        if len(bins) > self.max_bins:
            self._collapse()

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def _collapse(self) -> None:
        # Fold the lowest bins into one so that at most max_bins remain.
        bins = self._bins
        excess = len(bins) - self.max_bins + 1
        folded = sum(bins[:excess])
        rest = bins[excess:]
        rest[0] += folded
        self._bins = rest
        self._offset += excess

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of `other` (same accuracy required) to this sketch."""
        if other.alpha != self.alpha:
            raise ValueError(
                f"cannot merge sketches of different accuracy ({self.alpha} and {other.alpha})"
            )
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.zero_count += other.zero_count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if not other._bins:
            return
        if not self._bins:
            self._bins = array("q", other._bins)
            self._offset = other._offset
            return
        low = min(self._offset, other._offset)
        high = max(self._offset + len(self._bins), other._offset + len(other._bins))
        merged = np.zeros(high - low, dtype=np.int64)
        for offset, bins in ((self._offset, self._bins), (other._offset, other._bins)):
            start = offset - low
            merged[start : start + len(bins)] += np.frombuffer(bins, dtype=np.int64)
        out = array("q")
        out.frombytes(merged.tobytes())
        self._bins = out
        self._offset = low
        if len(out) > self.max_bins:
            self._collapse()

    def copy(self) -> QuantileSketch:
        clone = QuantileSketch(self.alpha, self.max_bins)
        clone.merge(self)
        return clone

    def quantile(self, q: float) -> float:
        """The value at quantile `q` in [0, 1] (NaN when empty)."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Several quantiles in one walk over the bins (NaN each when empty)."""
        if self.count == 0:
            return [math.nan] * len(qs)
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q}")
        cumulative = np.cumsum(np.frombuffer(self._bins, dtype=np.int64)) + self.zero_count
        answers: list[float] = []
        for q in qs:
            rank = q * (self.count - 1)
            if rank < self.zero_count:
                value = 0.0
            else:
                # First bin whose cumulative count passes the rank holds that order statistic.
                index = int(np.searchsorted(cumulative, rank, side="right"))
                index = min(index, len(cumulative) - 1)
                value = 2.0 * self._gamma ** (self._offset + index) / (self._gamma + 1.0)
            # The exact answer lies in [min, max]: clamping can only reduce the error.
            answers.append(min(max(value, self.min), self.max))
        return answers

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan


def merged(sketches: Iterable[QuantileSketch], alpha: float, max_bins: int) -> QuantileSketch:
    """A new sketch holding the union of `sketches`."""
    out = QuantileSketch(alpha, max_bins)
    for sketch in sketches:
        out.merge(sketch)
    return out
