"""Validation of data profiles (the drift baseline stored with a version).

A profile is kept in its JSON form: {"features": [...], "predictions": [...]}, each entry
{"name", "kind": "NUMERIC"|"CATEGORICAL", "bin_edges", "counts", "categories", "quantiles",
"count", "mean", "stddev", "min", "max"}.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

from modelhub.common.errors import InvalidArgumentError

MAX_FEATURES = 10_000
MAX_BINS = 10_000


def _finite(values: list[Any], field: str) -> list[float]:
    out: list[float] = []
    for value in values:
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgumentError(f"{field} must hold finite numbers", field=field)
        out.append(number)
    return out


def _check_feature(entry: dict[str, Any], field: str) -> None:
    name = entry.get("name", "")
    if not name:
        raise InvalidArgumentError(f"{field}.name is required", field=f"{field}.name")
    kind = entry.get("kind", "KIND_UNSPECIFIED")
    counts = _finite(list(entry.get("counts", [])), f"{field}.counts")
    if any(c < 0 for c in counts):
        raise InvalidArgumentError(
            f"{field}.counts of {name!r} must be non-negative", field=f"{field}.counts"
        )
    if len(counts) > MAX_BINS:
        raise InvalidArgumentError(
            f"{field} {name!r} has more than {MAX_BINS} bins", field=f"{field}.counts"
        )
    if kind == "NUMERIC":
        edges = _finite(list(entry.get("bin_edges", [])), f"{field}.bin_edges")
        if len(edges) != len(counts) + 1 or len(counts) == 0:
            raise InvalidArgumentError(
                f"{field} {name!r}: a numeric histogram needs len(bin_edges) == len(counts) + 1 "
                f"and at least one bin (got {len(edges)} edges, {len(counts)} counts)",
                field=f"{field}.bin_edges",
            )
        if any(b <= a for a, b in pairwise(edges)):
            raise InvalidArgumentError(
                f"{field} {name!r}: bin_edges must be strictly increasing",
                field=f"{field}.bin_edges",
            )
        _finite(list(entry.get("quantiles", [])), f"{field}.quantiles")
    elif kind == "CATEGORICAL":
        categories = list(entry.get("categories", []))
        if len(categories) != len(counts) or not categories:
            raise InvalidArgumentError(
                f"{field} {name!r}: a categorical feature needs one count per category "
                f"(got {len(categories)} categories, {len(counts)} counts)",
                field=f"{field}.categories",
            )
        if len(set(categories)) != len(categories):
            raise InvalidArgumentError(
                f"{field} {name!r}: categories must be unique", field=f"{field}.categories"
            )
    else:
        raise InvalidArgumentError(
            f"{field} {name!r}: kind must be NUMERIC or CATEGORICAL", field=f"{field}.kind"
        )


def validate_profile(profile: dict[str, Any], field: str = "data_profile") -> dict[str, Any]:
    """Return the profile when it is well-formed, else raise InvalidArgumentError."""
    for group in ("features", "predictions"):
        entries = list(profile.get(group, []))
        if len(entries) > MAX_FEATURES:
            raise InvalidArgumentError(
                f"{field}.{group} has more than {MAX_FEATURES} entries", field=f"{field}.{group}"
            )
        names: set[str] = set()
        for i, entry in enumerate(entries):
            _check_feature(entry, f"{field}.{group}[{i}]")
            if entry["name"] in names:
                raise InvalidArgumentError(
                    f"{field}.{group} names {entry['name']!r} twice", field=f"{field}.{group}"
                )
            names.add(entry["name"])
    return profile
