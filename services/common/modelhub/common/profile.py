"""Data profiles — the per-feature distribution of reference data, a version's drift
baseline — and the one validator of them.

The registry enforces these rules when a profile is uploaded or updated, and the monitor
when a baseline is set or read, so that a profile the registry stores is one the monitor
can use. A numeric feature is a histogram (`bin_edges`, one more than `counts`) plus
summary statistics and quantiles; a categorical one is counts per category.

Rules: at most MAX_PROFILE_FEATURES features and as many predictions, each named by
FEATURE_NAME (1-128 of letters, digits and `_.:[]/-`: no spaces), unique within its group;
NUMERIC: 2 to MAX_BINS + 1 finite, strictly increasing edges, no categories; CATEGORICAL:
1 to MAX_CATEGORIES unique categories, no edges; counts one per bin or category, finite,
non-negative and not all zero; quantiles finite; `count` non-negative.

The registry keeps profiles in their protobuf JSON form (`profile_from_json` reads it).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelhub.common.errors import FieldViolation
from modelhub.common.violations import violations_error

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)
# Feature, output, variant and shadow names as events and profiles carry them.
FEATURE_NAME = re.compile(r"^[A-Za-z0-9_.:\[\]/-]{1,128}$")
MAX_BINS = 1000
MAX_CATEGORIES = 1000
MAX_PROFILE_FEATURES = 1000

# The protobuf enum names of FeatureProfile.Kind (the JSON form).
_JSON_KINDS = {"NUMERIC": NUMERIC, "CATEGORICAL": CATEGORICAL}


@dataclass(slots=True)
class FeatureProfile:
    """Distribution of one feature or output."""

    name: str
    kind: str
    bin_edges: list[float] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    quantiles: list[float] = field(default_factory=list)
    count: int = 0
    mean: float = 0.0
    stddev: float = 0.0
    min: float = 0.0
    max: float = 0.0


@dataclass(slots=True)
class DataProfile:
    """Input features and outputs of reference data."""

    features: list[FeatureProfile] = field(default_factory=list)
    predictions: list[FeatureProfile] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.features and not self.predictions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataProfile:
        return cls(
            features=[FeatureProfile(**f) for f in data.get("features", [])],
            predictions=[FeatureProfile(**f) for f in data.get("predictions", [])],
        )


# ------------------------------------------------------------------------ JSON form


def _number(value: Any) -> float:
    """A JSON number (or "NaN"/"Infinity" as protobuf JSON writes them); NaN when it is
    none, which the validator then refuses."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _integer(value: Any) -> int:
    try:
        return int(value)  # int64 travels as a string in protobuf JSON
    except (TypeError, ValueError):
        return -1


def _numbers(entry: Mapping[str, Any], key: str) -> list[float]:
    values = entry.get(key, [])
    return [_number(v) for v in values] if isinstance(values, list) else [math.nan]


def _feature_from_json(entry: Any) -> FeatureProfile:
    if not isinstance(entry, Mapping):
        return FeatureProfile(name="", kind="")
    categories = entry.get("categories", [])
    return FeatureProfile(
        name=str(entry.get("name", "")),
        kind=_JSON_KINDS.get(str(entry.get("kind", "")), ""),
        bin_edges=_numbers(entry, "bin_edges"),
        counts=_numbers(entry, "counts"),
        categories=[str(c) for c in categories] if isinstance(categories, list) else [],
        quantiles=_numbers(entry, "quantiles"),
        count=_integer(entry.get("count", 0)),
        mean=_number(entry.get("mean", 0.0)),
        stddev=_number(entry.get("stddev", 0.0)),
        min=_number(entry.get("min", 0.0)),
        max=_number(entry.get("max", 0.0)),
    )


def profile_from_json(data: Mapping[str, Any]) -> DataProfile:
    """A profile from its protobuf JSON form (`{"features": [{"name", "kind": "NUMERIC",
    "bin_edges", "counts", …}], "predictions": […]}`), as the registry stores it."""

    def group(key: str) -> list[FeatureProfile]:
        entries = data.get(key, [])
        return [_feature_from_json(e) for e in entries] if isinstance(entries, list) else []

    return DataProfile(features=group("features"), predictions=group("predictions"))


# ------------------------------------------------------------------------- validation


def _counts_violations(counts: Sequence[float], where: str, out: list[FieldViolation]) -> None:
    if not all(math.isfinite(c) and c >= 0 for c in counts):
        out.append(FieldViolation(f"{where}.counts", "must be finite and non-negative"))
    elif not sum(counts) > 0:
        out.append(FieldViolation(f"{where}.counts", "must not all be zero"))


def _count_match(have: int, want: int, what: str, where: str, out: list[FieldViolation]) -> bool:
    if have != want:
        out.append(FieldViolation(f"{where}.counts", f"needs one count per {what}, got {have}"))
        return False
    return True


def _numeric_violations(feature: FeatureProfile, where: str, out: list[FieldViolation]) -> None:
    edges = feature.bin_edges
    if feature.categories:
        out.append(FieldViolation(f"{where}.categories", "must be empty for NUMERIC"))
    if len(edges) < 2 or len(edges) > MAX_BINS + 1:
        out.append(
            FieldViolation(
                f"{where}.bin_edges", f"needs 2 to {MAX_BINS + 1} edges, got {len(edges)}"
            )
        )
    elif not all(math.isfinite(e) for e in edges) or any(
        b <= a for a, b in itertools.pairwise(edges)
    ):
        out.append(FieldViolation(f"{where}.bin_edges", "must be finite and strictly increasing"))
    bins = max(len(edges) - 1, 0)
    if _count_match(len(feature.counts), bins, f"bin ({bins})", where, out):
        _counts_violations(feature.counts, where, out)
    if not all(math.isfinite(q) for q in feature.quantiles):
        out.append(FieldViolation(f"{where}.quantiles", "must be finite"))


def _categorical_violations(feature: FeatureProfile, where: str, out: list[FieldViolation]) -> None:
    cats = feature.categories
    if feature.bin_edges:
        out.append(FieldViolation(f"{where}.bin_edges", "must be empty for CATEGORICAL"))
    if not cats or len(cats) > MAX_CATEGORIES:
        out.append(FieldViolation(f"{where}.categories", f"needs 1 to {MAX_CATEGORIES} categories"))
    elif len(set(cats)) != len(cats):
        out.append(FieldViolation(f"{where}.categories", "must be unique"))
    if _count_match(len(feature.counts), len(cats), f"category ({len(cats)})", where, out):
        _counts_violations(feature.counts, where, out)


def feature_violations(feature: FeatureProfile, where: str, out: list[FieldViolation]) -> None:
    """Everything wrong with one feature (its name excepted), appended to `out`."""
    if feature.kind == NUMERIC:
        _numeric_violations(feature, where, out)
    elif feature.kind == CATEGORICAL:
        _categorical_violations(feature, where, out)
    else:
        out.append(FieldViolation(f"{where}.kind", "must be NUMERIC or CATEGORICAL"))
    if feature.count < 0:
        out.append(FieldViolation(f"{where}.count", "must be non-negative"))


def _group_violations(
    features: Sequence[FeatureProfile], where: str, out: list[FieldViolation]
) -> None:
    if len(features) > MAX_PROFILE_FEATURES:
        out.append(FieldViolation(where, f"more than {MAX_PROFILE_FEATURES} entries"))
        return
    seen: set[str] = set()
    for i, feature in enumerate(features):
        path = f"{where}[{i}]"
        if not FEATURE_NAME.match(feature.name):
            out.append(
                FieldViolation(
                    f"{path}.name",
                    "must be 1-128 letters, digits and _.:[]/- (no spaces), "
                    f"got {feature.name[:140]!r}",
                )
            )
        elif feature.name in seen:
            out.append(FieldViolation(f"{path}.name", f"duplicate feature {feature.name!r}"))
        seen.add(feature.name)
        feature_violations(feature, path, out)


def profile_violations(
    profile: DataProfile, path: str = "profile", *, allow_empty: bool = False
) -> list[FieldViolation]:
    """Everything wrong with `profile` (see the module docstring); an empty profile is
    wrong unless `allow_empty` (the registry stores it as "no baseline")."""
    out: list[FieldViolation] = []
    if profile.is_empty() and not allow_empty:
        out.append(FieldViolation(path, "must describe at least one feature or prediction"))
    _group_violations(profile.features, f"{path}.features", out)
    _group_violations(profile.predictions, f"{path}.predictions", out)
    return out


def validate_profile(
    profile: DataProfile, path: str = "profile", *, allow_empty: bool = False
) -> None:
    """INVALID_ARGUMENT listing every problem of `profile`, or nothing."""
    out = profile_violations(profile, path, allow_empty=allow_empty)
    if out:
        raise violations_error(out, "data profile")
