"""Live request statistics: what one time bucket of a series holds, and the figures of a
window (rates, error rates by status code, latency quantiles, prediction distribution,
outcomes) obtained by merging buckets — of one series, or of many when aggregating."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelhub.monitor.events import status_name
from modelhub.monitor.sketch import QuantileSketch

OTHER_LABEL = "other"
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def prediction_label(name: str, value: float | str, qualified: bool) -> str:
    """The distribution label of one output value: the class itself, or a bin for numbers
    (steps of 0.1 within [-1, 1], where scores and probabilities live; decades beyond)."""
    if isinstance(value, str):
        label = value
    elif -1.0 <= value <= 1.0:
        low = math.floor(round(value * 10.0, 9)) / 10.0
        low = min(low, 0.9)
        label = f"[{low:.1f},{low + 0.1:.1f})"
    else:
        exponent = math.floor(math.log10(abs(value)))
        low, high = 10.0**exponent, 10.0 ** (exponent + 1)
        label = f"[{low:g},{high:g})" if value > 0 else f"(-{high:g},-{low:g}]"
    return f"{name}={label}" if qualified else label


class Bucket:
    """The requests of one series in one time slot."""

    __slots__ = (
        "codes",
        "compute_n",
        "compute_sum",
        "conversions",
        "errors",
        "latency",
        "outcome_sum",
        "outcomes",
        "predictions",
        "queue_n",
        "queue_sum",
        "requests",
    )

    def __init__(self, alpha: float, max_bins: int) -> None:
        self.requests = 0
        self.errors = 0
        self.codes: dict[int, int] = {}
        self.latency = QuantileSketch(alpha, max_bins)
        self.predictions: dict[str, int] = {}
        self.outcomes = 0
        self.conversions = 0
        self.outcome_sum = 0.0
        self.queue_sum = 0.0
        self.queue_n = 0
        self.compute_sum = 0.0
        self.compute_n = 0

    def add(
        self,
        latency_s: float,
        status_code: int,
        queue_s: float,
        compute_s: float,
        labels: Iterable[str],
        max_labels: int,
    ) -> None:
        self.requests += 1
        if status_code:
            self.errors += 1
        self.codes[status_code] = self.codes.get(status_code, 0) + 1
        self.latency.add(latency_s)
        if queue_s > 0.0:
            self.queue_sum += queue_s
            self.queue_n += 1
        if compute_s > 0.0:
            self.compute_sum += compute_s
            self.compute_n += 1
        predictions = self.predictions
        for label in labels:
            if label not in predictions and len(predictions) >= max_labels:
                label = OTHER_LABEL
            predictions[label] = predictions.get(label, 0) + 1

    def add_outcome(self, value: float) -> None:
        self.outcomes += 1
        self.outcome_sum += value
        if value > 0.0:
            self.conversions += 1


@dataclass(slots=True)
class WindowStats:
    """The figures of one window, for one series or an aggregate of several."""

    window_s: int
    span_s: float
    latency: QuantileSketch
    requests: int = 0
    errors: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    predictions: dict[str, int] = field(default_factory=dict)
    outcomes: int = 0
    conversions: int = 0
    outcome_sum: float = 0.0
    queue_sum: float = 0.0
    queue_n: int = 0
    compute_sum: float = 0.0
    compute_n: int = 0

    @classmethod
    def of(
        cls, buckets: Iterable[Bucket], window_s: int, span_s: float, alpha: float, max_bins: int
    ) -> WindowStats:
        """Merge `buckets` (from any number of series) into one window's figures."""
        stats = cls(window_s=window_s, span_s=span_s, latency=QuantileSketch(alpha, max_bins))
        codes: dict[int, int] = {}
        for bucket in buckets:
            stats.requests += bucket.requests
            stats.errors += bucket.errors
            for code, n in bucket.codes.items():
                codes[code] = codes.get(code, 0) + n
            stats.latency.merge(bucket.latency)
            for label, n in bucket.predictions.items():
                stats.predictions[label] = stats.predictions.get(label, 0) + n
            stats.outcomes += bucket.outcomes
            stats.conversions += bucket.conversions
            stats.outcome_sum += bucket.outcome_sum
            stats.queue_sum += bucket.queue_sum
            stats.queue_n += bucket.queue_n
            stats.compute_sum += bucket.compute_sum
            stats.compute_n += bucket.compute_n
        stats.codes = {status_name(code): n for code, n in sorted(codes.items())}
        return stats

    @property
    def request_rate(self) -> float:
        return self.requests / self.span_s if self.span_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def outcome_rate(self) -> float:
        """Conversions per request: the share of requests with a positive outcome."""
        return self.conversions / self.requests if self.requests else 0.0

    @property
    def outcome_mean(self) -> float:
        return self.outcome_sum / self.outcomes if self.outcomes else 0.0

    @property
    def queue_mean(self) -> float:
        return self.queue_sum / self.queue_n if self.queue_n else 0.0

    @property
    def compute_mean(self) -> float:
        return self.compute_sum / self.compute_n if self.compute_n else 0.0


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Quantiles (within `relative_accuracy`), exact mean and max, in seconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float
    relative_accuracy: float
    count: int

    @classmethod
    def of(cls, sketch: QuantileSketch) -> LatencySummary:
        if sketch.count == 0:
            return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, sketch.alpha, 0)
        p50, p90, p95, p99 = sketch.quantiles(QUANTILES)
        return cls(p50, p90, p95, p99, sketch.mean, sketch.max, sketch.alpha, sketch.count)
