"""Building baseline profiles from samples, and validating profiles from elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.monitor.profile import (
    CATEGORICAL,
    NUMERIC,
    DataProfile,
    FeatureProfile,
    FeatureSample,
    bin_counts,
    build_profile,
    validate_profile,
)


def test_numeric_profile_bins_at_deciles() -> None:
    values = np.random.default_rng(0).normal(10.0, 2.0, 10_000)
    profile = build_profile([FeatureSample("x", values.tolist())], []).features[0]
    assert profile.kind == NUMERIC
    assert len(profile.bin_edges) == 11 and len(profile.counts) == 10
    assert profile.counts == pytest.approx([1000.0] * 10, abs=1)  # equal-population bins
    assert profile.bin_edges[0] == profile.min and profile.bin_edges[-1] == profile.max
    assert profile.count == 10_000
    assert profile.mean == pytest.approx(values.mean())
    assert profile.stddev == pytest.approx(values.std())
    assert len(profile.quantiles) == 13
    validate_profile(DataProfile([profile]))


def test_categorical_profile_and_round_trip_through_dict() -> None:
    profile = build_profile([], [FeatureSample("label", categories=["a"] * 6 + ["b"] * 3 + ["c"])])
    feature = profile.predictions[0]
    assert feature.kind == CATEGORICAL
    assert feature.categories == ["a", "b", "c"] and feature.counts == [6.0, 3.0, 1.0]
    assert DataProfile.from_dict(profile.to_dict()) == profile


def test_values_outside_the_edges_count_in_the_outer_bins() -> None:
    assert bin_counts([0.0, 1.0, 2.0], [-5.0, 0.0, 0.5, 1.0, 2.0, 9.0]).tolist() == [3.0, 3.0]


def test_bad_samples_are_all_reported() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        build_profile(
            [
                FeatureSample("x", [1.0] * 5),
                FeatureSample("x", [1.0] * 20),
                FeatureSample("y", [float("nan")] * 20),
                FeatureSample("z", [1.0] * 20, ["a"] * 20),
                FeatureSample("bad name!", [1.0] * 20),
            ],
            [],
        )
    fields = [v.field for v in err.value.violations]
    assert fields == [
        "samples.features[0]",
        "samples.features[1].name",
        "samples.features[2].numbers",
        "samples.features[3]",
        "samples.features[4].name",
    ]
    assert "at least 10 values" in err.value.message
    assert "nothing was stored" in err.value.message


@pytest.mark.parametrize(
    ("feature", "field", "message"),
    [
        (FeatureProfile("x", NUMERIC, [0.0, 1.0], [1.0, 2.0]), "counts", "one count per bin"),
        (FeatureProfile("x", NUMERIC, [1.0, 0.0], [1.0]), "bin_edges", "strictly increasing"),
        (FeatureProfile("x", NUMERIC, [0.0, 1.0], [-1.0]), "counts", "non-negative"),
        (FeatureProfile("x", NUMERIC, [0.0, 1.0], [0.0]), "counts", "not all be zero"),
        (FeatureProfile("x", CATEGORICAL, [], [1.0, 1.0], ["a", "a"]), "categories", "unique"),
        (FeatureProfile("x", "", [], [1.0], ["a"]), "kind", "NUMERIC or CATEGORICAL"),
    ],
)
def test_invalid_profiles(feature: FeatureProfile, field: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as err:
        validate_profile(DataProfile([feature]))
    assert err.value.violations[0].field == f"profile.features[0].{field}"


def test_empty_profile_is_invalid() -> None:
    with pytest.raises(InvalidArgumentError, match="at least one feature"):
        validate_profile(DataProfile())
