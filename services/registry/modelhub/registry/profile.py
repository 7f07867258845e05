"""Validation of data profiles (the drift baseline stored with a version), at upload and
update: the suite's one validator (`modelhub.common.profile`), so that every profile the
registry stores is one the monitor accepts as a baseline.

A profile is kept in its protobuf JSON form: {"features": [...], "predictions": [...]},
each entry {"name", "kind": "NUMERIC"|"CATEGORICAL", "bin_edges", "counts", "categories",
"quantiles", "count", "mean", "stddev", "min", "max"}. An empty profile is kept as given
(the monitor reads it as "no baseline").
"""

from __future__ import annotations

from typing import Any

from modelhub.common.profile import profile_from_json
from modelhub.common.profile import validate_profile as validate


def validate_profile(profile: dict[str, Any], field: str = "data_profile") -> dict[str, Any]:
    """Return the profile when it is well-formed, else raise InvalidArgumentError listing
    every problem (field paths under `field`)."""
    validate(profile_from_json(profile), field, allow_empty=True)
    return profile
