"""What the monitor ingests: served requests (with sampled features, outputs and shadow
comparisons) and outcomes, plus their validation.

Validation returns field violations instead of raising, because an ingested batch keeps
its valid events and counts the invalid ones; callers that must refuse a whole batch turn
the violations into one `InvalidArgumentError`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from modelhub.common.errors import FieldViolation, InvalidArgumentError
from modelhub.common.events import OUTCOME_KINDS
from modelhub.common.names import ENDPOINTS, MODELS, RESOURCE_ID, id_in
from modelhub.common.profile import FEATURE_NAME
from modelhub.common.violations import prefixed, violations_error

__all__ = ["prefixed", "violations_error"]

# Canonical gRPC status code names by number (grpc.StatusCode, without importing grpc).
STATUS_NAMES: tuple[str, ...] = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

# Registry identifiers (the registry's rule), whole: `IDENTIFIER.match` matches all of it.
IDENTIFIER = re.compile(rf"(?:{RESOURCE_ID.pattern})\Z")
# Variant, shadow and feature names are set by users of the router and the models:
# accept the usual identifier characters, bounded in length (the data profile's rule).
LABEL = FEATURE_NAME
SOURCES = ("router", "inference", "unknown")
# Most output values an event may carry for a shadow comparison.
MAX_OUTPUTS = 1024

Value = float | str


@dataclass(slots=True)
class ShadowResult:
    """One shadow's answer compared with the primary's."""

    shadow: str
    model: str
    version: int
    status_code: int = 0
    latency_s: float = 0.0
    max_abs_diff: float = 0.0
    argmax_agree: bool = False
    has_argmax: bool = False


@dataclass(slots=True)
class Event:
    """One served request. `time` 0 means "when received"."""

    model: str
    version: int
    latency_s: float
    time: float = 0.0
    request_id: str = ""
    endpoint: str = ""
    variant: str = ""
    queue_s: float = 0.0
    compute_s: float = 0.0
    status_code: int = 0
    key_hash: str = ""
    rows: int = 0
    # Sequences, empty ones shared (`()`): most events carry none of them, and the monitor
    # decodes one event per request served, so a list each would be garbage to collect.
    features: Sequence[tuple[str, Value]] = ()
    predictions: Sequence[tuple[str, Value]] = ()
    shadows: Sequence[ShadowResult] = ()
    source: str = "unknown"
    # A shadow copy (its `variant` names the shadow), or a primary that was mirrored; both
    # carry the first output row in `outputs`, joined by `request_id` into a comparison.
    shadow: bool = False
    mirrored: bool = False
    outputs: Sequence[float] = ()
    # With `mirrored`: the shadows expected to answer, `{shadow}={model}:{version}`.
    mirrored_to: Sequence[str] = ()


@dataclass(slots=True)
class Outcome:
    """A conversion, reward or label reported for a served request."""

    request_id: str
    value: float
    kind: str = "conversion"
    time: float = 0.0  # 0 = now


@functools.lru_cache(maxsize=4096)
def is_label(name: str) -> bool:
    """Whether `name` is a valid variant, shadow or feature name (cached: the same few
    names arrive with every event)."""
    return LABEL.match(name) is not None


@functools.lru_cache(maxsize=4096)
def model_id(name: str) -> str | None:
    """The `{model}` of `models/{model}` (the registry's rules), or None when `name` is
    not such a name (cached: the same few names arrive with every event)."""
    return id_in(name, MODELS)


@functools.lru_cache(maxsize=4096)
def endpoint_id(name: str) -> str | None:
    """The `{endpoint}` of `endpoints/{endpoint}`, or None (cached, like `model_id`)."""
    return id_in(name, ENDPOINTS)


def check_model_name(name: str, field_name: str, *, required: bool = True) -> None:
    """Raise INVALID_ARGUMENT unless `name` is `models/{model}` (or empty when optional)."""
    if not name and not required:
        return
    if not name:
        raise InvalidArgumentError(
            f"{field_name} is required: `models/{{model}}`", field=field_name
        )
    if model_id(name) is None:
        raise InvalidArgumentError(
            f"{field_name} must be `models/{{model}}` with a lowercase identifier "
            f"(letters, digits, '-'), got {name!r}",
            field=field_name,
        )


def check_endpoint_name(name: str, field_name: str, *, required: bool = True) -> None:
    """Raise INVALID_ARGUMENT unless `name` is `endpoints/{endpoint}` (or empty)."""
    if not name and not required:
        return
    if not name:
        raise InvalidArgumentError(
            f"{field_name} is required: `endpoints/{{endpoint}}`", field=field_name
        )
    if endpoint_id(name) is None:
        raise InvalidArgumentError(
            f"{field_name} must be `endpoints/{{endpoint}}` with a lowercase identifier "
            f"(letters, digits, '-'), got {name!r}",
            field=field_name,
        )


def status_name(code: int) -> str:
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else str(code)


def _finite_non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0.0


def _check_values(
    values: Sequence[tuple[str, Value]], path: str, out: list[FieldViolation]
) -> None:
    for i, (name, value) in enumerate(values):
        if not is_label(name):
            out.append(
                FieldViolation(
                    f"{path}[{i}].name",
                    f"must be 1-128 characters of letters, digits and _.:[]/-, got {name!r}",
                )
            )
        if isinstance(value, float) and not math.isfinite(value):
            out.append(FieldViolation(f"{path}[{i}].number", f"must be finite, got {value}"))
        elif isinstance(value, str) and len(value) > 256:
            out.append(FieldViolation(f"{path}[{i}].category", "must be at most 256 characters"))


_INF = math.inf
_STATUS_COUNT = len(STATUS_NAMES)


def _values_valid(values: Sequence[tuple[str, Value]]) -> bool:
    for name, value in values:
        if not is_label(name):
            return False
        if isinstance(value, str):
            if len(value) > 256:
                return False
        elif not -_INF < value < _INF:  # NaN fails too
            return False
    return True


def event_violations(event: Event, now: float, max_skew_s: float) -> list[FieldViolation]:
    """Everything wrong with `event`, as field violations relative to the event.

    Runs for every ingested event: a valid one (nearly all) passes one chain of cheap
    checks (the names through cached lookups) and allocates nothing; only an event that
    fails it is examined field by field for the violations."""
    time = event.time
    if (
        event.version > 0
        and 0.0 <= event.latency_s < _INF
        and 0.0 <= event.queue_s < _INF
        and 0.0 <= event.compute_s < _INF
        and 0 <= event.status_code < _STATUS_COUNT
        and event.rows >= 0
        and len(event.request_id) <= 256
        and event.source in SOURCES
        and not (event.shadow and event.mirrored)
        and (not time or -_INF < time < _INF)
        and not time > now + max_skew_s
        and model_id(event.model) is not None
        and (not event.endpoint or endpoint_id(event.endpoint) is not None)
        and (not event.variant or is_label(event.variant))
        and len(event.outputs) <= MAX_OUTPUTS
        and not event.shadows
        and (not event.features or _values_valid(event.features))
        and (not event.predictions or _values_valid(event.predictions))
    ):
        return []
    return _all_violations(event, now, max_skew_s)


def _identity_violations(event: Event, out: list[FieldViolation]) -> None:
    """Model and version."""
    if not event.model:
        out.append(FieldViolation("model", "is required: `models/{model}`"))
    elif model_id(event.model) is None:
        out.append(FieldViolation("model", f"must be `models/{{model}}`, got {event.model!r}"))
    if event.version <= 0:
        out.append(FieldViolation("version", f"must be a positive version, got {event.version}"))


def _route_violations(event: Event, out: list[FieldViolation]) -> None:
    """Endpoint, variant, source, request id."""
    if event.endpoint and endpoint_id(event.endpoint) is None:
        out.append(
            FieldViolation("endpoint", f"must be `endpoints/{{endpoint}}`, got {event.endpoint!r}")
        )
    if event.variant and not is_label(event.variant):
        out.append(FieldViolation("variant", f"is not a valid name: {event.variant!r}"))
    if event.source not in SOURCES:
        out.append(
            FieldViolation("source", f"must be one of {', '.join(SOURCES)}, got {event.source!r}")
        )
    if len(event.request_id) > 256:
        out.append(FieldViolation("request_id", "must be at most 256 characters"))


def _measure_violations(event: Event, out: list[FieldViolation]) -> None:
    """Durations, status code, rows."""
    durations = (
        ("latency_seconds", event.latency_s),
        ("queue_seconds", event.queue_s),
        ("compute_seconds", event.compute_s),
    )
    for name, value in durations:
        if not _finite_non_negative(value):
            out.append(FieldViolation(name, f"must be finite and non-negative, got {value}"))
    if not 0 <= event.status_code < len(STATUS_NAMES):
        out.append(
            FieldViolation(
                "status_code", f"must be a gRPC status code 0-16, got {event.status_code}"
            )
        )
    if event.rows < 0:
        out.append(FieldViolation("rows", f"must be non-negative, got {event.rows}"))


def _time_violations(
    event: Event, now: float, max_skew_s: float, out: list[FieldViolation]
) -> None:
    if event.time and not math.isfinite(event.time):
        out.append(FieldViolation("time", "must be a valid timestamp"))
    elif event.time > now + max_skew_s:
        out.append(
            FieldViolation(
                "time",
                f"is {event.time - now:.0f} s in the future (more than the allowed clock "
                f"skew of {max_skew_s:.0f} s): check the sender's clock",
            )
        )


def _shadow_violations(i: int, shadow: ShadowResult, out: list[FieldViolation]) -> None:
    path = f"shadows[{i}]"
    if not is_label(shadow.shadow):
        out.append(FieldViolation(f"{path}.shadow", "is required: the shadow's name"))
    if model_id(shadow.model) is None:
        out.append(
            FieldViolation(f"{path}.model", f"must be `models/{{model}}`, got {shadow.model!r}")
        )
    if shadow.version <= 0:
        out.append(FieldViolation(f"{path}.version", "must be a positive version"))
    if not 0 <= shadow.status_code < len(STATUS_NAMES):
        out.append(FieldViolation(f"{path}.status_code", "must be a gRPC status code 0-16"))
    if not _finite_non_negative(shadow.latency_s):
        out.append(FieldViolation(f"{path}.latency_seconds", "must be finite and non-negative"))
    if not _finite_non_negative(shadow.max_abs_diff):
        out.append(FieldViolation(f"{path}.max_abs_diff", "must be finite and non-negative"))


def _all_violations(event: Event, now: float, max_skew_s: float) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    _identity_violations(event, out)
    _measure_violations(event, out)
    _route_violations(event, out)
    _time_violations(event, now, max_skew_s, out)
    if event.shadow and event.mirrored:
        out.append(FieldViolation("mirrored", "an event is a shadow copy or a primary, not both"))
    if len(event.outputs) > MAX_OUTPUTS:
        out.append(
            FieldViolation("outputs", f"at most {MAX_OUTPUTS} values, got {len(event.outputs)}")
        )
    _check_values(event.features, "features", out)
    _check_values(event.predictions, "predictions", out)
    for i, shadow in enumerate(event.shadows):
        _shadow_violations(i, shadow, out)
    return out


def outcome_violations(outcome: Outcome) -> list[FieldViolation]:
    """Everything wrong with `outcome`, relative to the outcome."""
    out: list[FieldViolation] = []
    if not outcome.request_id:
        out.append(FieldViolation("request_id", "is required"))
    elif len(outcome.request_id) > 256:
        out.append(FieldViolation("request_id", "must be at most 256 characters"))
    if not math.isfinite(outcome.value):
        out.append(FieldViolation("value", f"must be finite, got {outcome.value}"))
    if outcome.kind not in OUTCOME_KINDS:
        out.append(
            FieldViolation(
                "kind", f"must be one of {', '.join(OUTCOME_KINDS)}, got {outcome.kind!r}"
            )
        )
    elif outcome.kind == "conversion" and outcome.value not in (0.0, 1.0):
        out.append(FieldViolation("value", f"a conversion is 1 or 0, got {outcome.value}"))
    if outcome.time and not math.isfinite(outcome.time):
        out.append(FieldViolation("time", "must be a valid timestamp"))
    return out
