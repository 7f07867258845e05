"""Endpoint validation: weights must be finite and non-negative, and their sum finite and
positive, or traffic splits are undefined (an infinite total sends everything to one
variant)."""

from __future__ import annotations

import math

import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.registry.resources import Endpoint, Variant, VersionSelector
from modelhub.registry.validation import validate_endpoint


def _endpoint(*weights: float) -> Endpoint:
    return Endpoint(
        id="fraud",
        variants=[
            Variant(f"v{i}", "models/fraud", VersionSelector(version=1), weight)
            for i, weight in enumerate(weights)
        ],
    )


def _field(error: InvalidArgumentError) -> str:
    [violation] = error.violations
    return violation.field


def test_weights_whose_sum_overflows_are_refused() -> None:
    assert math.isinf(1e308 + 1e308)
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_endpoint(1e308, 1e308))
    assert _field(info.value) == "endpoint.variants"
    assert "finite" in info.value.message


def test_a_sum_that_overflows_only_with_many_variants_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_endpoint(*([1.7e308] * 3)))
    assert _field(info.value) == "endpoint.variants"


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -1.0])
def test_each_weight_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_endpoint(1.0, bad))
    assert _field(info.value) == "endpoint.variants[1].weight"


def test_weights_must_have_a_positive_sum() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_endpoint(0.0, 0.0))
    assert _field(info.value) == "endpoint.variants"


def test_large_finite_weights_are_accepted() -> None:
    endpoint = validate_endpoint(_endpoint(1e307, 1e307, 5e-324))
    assert [v.weight for v in endpoint.variants] == [1e307, 1e307, 5e-324]
