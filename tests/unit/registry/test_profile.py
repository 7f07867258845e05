"""The registry checks a data profile (in its stored JSON form) with the suite's one
validator: it refuses exactly what the monitor refuses as a baseline."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import json_format

from modelhub.api.common.v1 import types_pb2
from modelhub.common.errors import InvalidArgumentError
from modelhub.monitor.convert import profile_from_proto
from modelhub.monitor.profile import validate_profile as monitor_validate
from modelhub.registry.profile import validate_profile

NUMERIC, CATEGORICAL = types_pb2.FeatureProfile.NUMERIC, types_pb2.FeatureProfile.CATEGORICAL


def _feature(**fields: Any) -> types_pb2.FeatureProfile:
    base: dict[str, Any] = {
        "name": "x",
        "kind": NUMERIC,
        "bin_edges": [0.0, 1.0, 2.0],
        "counts": [1.0, 2.0],
    }
    return types_pb2.FeatureProfile(**{**base, **fields})


CASES = [
    (_feature(), None),
    (_feature(name="amount eur"), "features[0].name"),
    (_feature(name="é"), "features[0].name"),
    (_feature(counts=[0.0, 0.0]), "features[0].counts"),
    (_feature(counts=[1.0]), "features[0].counts"),
    (_feature(counts=[1.0, math.nan]), "features[0].counts"),
    (
        _feature(bin_edges=[float(i) for i in range(1501)], counts=[1.0] * 1500),
        "features[0].bin_edges",
    ),
    (_feature(bin_edges=[0.0, 2.0, 1.0]), "features[0].bin_edges"),
    (_feature(quantiles=[math.inf]), "features[0].quantiles"),
    (_feature(count=-1), "features[0].count"),
    (_feature(kind=0), "features[0].kind"),
    (_feature(categories=["a"]), "features[0].categories"),
    (
        _feature(kind=CATEGORICAL, bin_edges=[], categories=["a", "b"], counts=[1.0, 0.0]),
        None,
    ),
    (
        _feature(kind=CATEGORICAL, bin_edges=[], categories=["a", "a"], counts=[1.0, 1.0]),
        "features[0].categories",
    ),
]


@pytest.mark.parametrize(("feature", "field"), CASES)
def test_the_registry_and_the_monitor_agree(
    feature: types_pb2.FeatureProfile, field: str | None
) -> None:
    message = types_pb2.DataProfile(features=[feature])
    stored = json_format.MessageToDict(message, preserving_proto_field_name=True)
    if field is None:
        assert validate_profile(stored, "data_profile") is stored
        monitor_validate(profile_from_proto(message), "data_profile")
        return
    with pytest.raises(InvalidArgumentError) as registry_error:
        validate_profile(stored, "data_profile")
    assert f"data_profile.{field}" in [v.field for v in registry_error.value.violations]
    with pytest.raises(InvalidArgumentError) as monitor_error:
        monitor_validate(profile_from_proto(message), "data_profile")
    assert [v.field for v in monitor_error.value.violations] == [
        v.field for v in registry_error.value.violations
    ]


def test_an_empty_profile_is_stored_as_no_baseline_and_every_problem_is_listed() -> None:
    assert validate_profile({}, "data_profile") == {}
    with pytest.raises(InvalidArgumentError) as err:
        validate_profile(
            {"features": [{"name": "a b", "kind": "NUMERIC"}, {"name": "ok", "kind": "X"}]},
            "metadata.data_profile",
        )
    fields = [v.field for v in err.value.violations]
    assert fields == [
        "metadata.data_profile.features[0].name",
        "metadata.data_profile.features[0].bin_edges",
        "metadata.data_profile.features[0].counts",
        "metadata.data_profile.features[1].kind",
    ]
