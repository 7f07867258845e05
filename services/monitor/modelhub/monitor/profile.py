"""Data profiles: the per-feature distribution of reference data, the drift baseline.

A numeric feature is a histogram (`bin_edges`, `counts`) plus summary statistics and
quantiles; a categorical one is counts per category (`modelhub.common.profile`, with the
one validator the registry enforces too). Profiles built here from samples bin numeric
features at the sample's deciles (equal-population bins, the usual choice for PSI).
Profiles from elsewhere (the registry, a client) are validated before use.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from modelhub.common.errors import FieldViolation
from modelhub.common.profile import (
    CATEGORICAL,
    FEATURE_NAME,
    KINDS,
    MAX_BINS,
    MAX_CATEGORIES,
    MAX_PROFILE_FEATURES,
    NUMERIC,
    DataProfile,
    FeatureProfile,
    validate_profile,
)
from modelhub.common.violations import violations_error

__all__ = [
    "CATEGORICAL",
    "KINDS",
    "MAX_BINS",
    "MAX_CATEGORIES",
    "MAX_PROFILE_FEATURES",
    "NUMERIC",
    "Baseline",
    "DataProfile",
    "FeatureProfile",
    "FeatureSample",
    "bin_counts",
    "build_profile",
    "categorical_profile",
    "numeric_profile",
    "validate_profile",
]
QUANTILE_PROBS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
)  # fmt: skip
DEFAULT_BINS = 10
MIN_BASELINE_VALUES = 10


@dataclass(frozen=True, slots=True)
class FeatureSample:
    """Raw reference values of one feature: numbers or categories."""

    name: str
    numbers: Sequence[float] = ()
    categories: Sequence[str] = ()


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin of each value for histogram `edges`: bins are [e_i, e_i+1), the last one closed,
    and values outside the edges count in the first or last bin."""
    index = np.searchsorted(edges, values, side="right") - 1
    return np.clip(index, 0, len(edges) - 2)


def bin_counts(edges: Sequence[float], values: ArrayLike) -> np.ndarray:
    """Counts per bin of `values`, binned as in `bin_index`."""
    edge_array = np.asarray(edges, dtype=np.float64)
    value_array = np.asarray(values, dtype=np.float64)
    if value_array.size == 0:
        return np.zeros(len(edge_array) - 1)
    index = bin_index(edge_array, value_array)
    return np.bincount(index, minlength=len(edge_array) - 1).astype(np.float64)


def numeric_profile(name: str, values: Sequence[float], bins: int = DEFAULT_BINS) -> FeatureProfile:
    """Profile of numeric `values` (finite), binned at their quantiles."""
    data = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.quantile(data, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:
        # A constant feature: one bin around the value (any other live value lands in it
        # too, which the KS statistic still sees).
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return FeatureProfile(
        name=name,
        kind=NUMERIC,
        bin_edges=edges.tolist(),
        counts=bin_counts(edges.tolist(), data).tolist(),
        quantiles=np.quantile(data, QUANTILE_PROBS).tolist(),
        count=int(data.size),
        mean=float(data.mean()),
        stddev=float(data.std()),
        min=float(data.min()),
        max=float(data.max()),
    )


def categorical_profile(name: str, values: Sequence[str]) -> FeatureProfile:
    """Profile of categorical `values`: counts per category, most frequent first."""
    counter = Counter(values)
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return FeatureProfile(
        name=name,
        kind=CATEGORICAL,
        categories=[category for category, _ in ordered],
        counts=[float(n) for _, n in ordered],
        count=len(values),
    )


def _sample_violations(
    samples: Sequence[FeatureSample], path: str, out: list[FieldViolation]
) -> None:
    seen: set[str] = set()
    for i, sample in enumerate(samples):
        where = f"{path}[{i}]"
        if not FEATURE_NAME.match(sample.name):
            out.append(
                FieldViolation(f"{where}.name", f"must be a feature name, got {sample.name!r}")
            )
        elif sample.name in seen:
            out.append(FieldViolation(f"{where}.name", f"duplicate feature {sample.name!r}"))
        seen.add(sample.name)
        if bool(sample.numbers) == bool(sample.categories):
            out.append(FieldViolation(where, "exactly one of numbers and categories must be given"))
            continue
        n = len(sample.numbers) or len(sample.categories)
        if n < MIN_BASELINE_VALUES:
            out.append(
                FieldViolation(
                    where,
                    f"needs at least {MIN_BASELINE_VALUES} values to describe a "
                    f"distribution, got {n}",
                )
            )
        if sample.numbers and not all(math.isfinite(x) for x in sample.numbers):
            out.append(FieldViolation(f"{where}.numbers", "must all be finite (no NaN or inf)"))
        if sample.categories and len(set(sample.categories)) > MAX_CATEGORIES:
            out.append(
                FieldViolation(
                    f"{where}.categories", f"more than {MAX_CATEGORIES} distinct categories"
                )
            )


def build_profile(
    features: Sequence[FeatureSample],
    predictions: Sequence[FeatureSample],
    path: str = "samples",
) -> DataProfile:
    """A profile from raw samples; INVALID_ARGUMENT listing every problem otherwise."""
    out: list[FieldViolation] = []
    if not features and not predictions:
        out.append(FieldViolation(path, "give at least one feature or prediction sample"))
    _sample_violations(features, f"{path}.features", out)
    _sample_violations(predictions, f"{path}.predictions", out)
    if out:
        raise violations_error(out, "baseline samples")

    def one(sample: FeatureSample) -> FeatureProfile:
        if sample.numbers:
            return numeric_profile(sample.name, sample.numbers)
        return categorical_profile(sample.name, sample.categories)

    return DataProfile([one(s) for s in features], [one(s) for s in predictions])


REGISTRY_ORIGIN = "registry"
MONITOR_ORIGIN = "monitor"


@dataclass(slots=True)
class Baseline:
    """The drift baseline of one model version and where it came from."""

    model: str
    version: int
    profile: DataProfile
    origin: str
    update_time: float
