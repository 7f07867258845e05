"""Endpoint validation: weights must be finite and non-negative, and their sum finite and
positive, or traffic splits are undefined (an infinite total sends everything to one
variant)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.registry.resources import AuditPolicy, Endpoint, Variant, VersionSelector
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


# ------------------------------------------------------------------ audit policy


def _audited(rate: float, *redact: str) -> Endpoint:
    return replace(_endpoint(1.0), audit=AuditPolicy(rate, list(redact)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.01, 1.0000001, 2.0])
def test_an_audit_sample_rate_outside_zero_to_one_is_refused(bad: float) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_audited(bad))
    assert _field(info.value) == "endpoint.audit.sample_rate"
    assert "[0, 1]" in info.value.message


@pytest.mark.parametrize("bad", ["", "x" * 257, "bad\nname", "tab\there"])
def test_redacted_input_names_must_be_printable_and_bounded(bad: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_audited(0.5, "ok", bad))
    assert _field(info.value) == "endpoint.audit.redact_inputs"
    assert "redact_inputs[1]" in info.value.message


def test_at_most_64_redacted_inputs() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(_audited(1.0, *(f"input_{i}" for i in range(65))))
    assert _field(info.value) == "endpoint.audit.redact_inputs"


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_a_valid_audit_policy_is_kept_with_duplicate_names_dropped(rate: float) -> None:
    validated = validate_endpoint(_audited(rate, "ssn", "card number", "ssn"))
    assert validated.audit == AuditPolicy(rate, ["ssn", "card number"])
    assert validate_endpoint(_endpoint(1.0)).audit is None


# --------------------------------------------------- names matched in full (tests/fuzz)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("sticky_key", "endpoint.sticky_key.name"),
        ("pool", "endpoint.variants[0].pool"),
        ("id", "endpoint_id"),
    ],
)
def test_a_trailing_newline_is_refused(change: str, field: str) -> None:
    from modelhub.registry.resources import KeySource, StickyKey

    endpoint = _endpoint(1.0)
    if change == "sticky_key":
        endpoint = replace(endpoint, sticky_key=StickyKey(KeySource.METADATA, "x-user-id\n"))
    elif change == "pool":
        endpoint = replace(endpoint, variants=[replace(endpoint.variants[0], pool=["h:80\n"])])
    else:
        endpoint = replace(endpoint, id="fraud\n")
    with pytest.raises(InvalidArgumentError) as info:
        validate_endpoint(endpoint)
    assert _field(info.value) == field
