"""Alert rules: a statistic of a series compared with a threshold, held for a duration.

Validation checks a whole rule and reports every problem at once, so a client fixes its
request in one round trip; nothing is stored unless the rule is valid as a whole.
"""

from __future__ import annotations

import enum
import math
import urllib.parse
from dataclasses import dataclass, replace

from modelhub.common.errors import FieldViolation, InvalidArgumentError
from modelhub.monitor.events import (
    IDENTIFIER,
    LABEL,
    SOURCES,
    endpoint_id,
    model_id,
    violations_error,
)
from modelhub.monitor.series import SeriesKey
from modelhub.monitor.windows import WINDOWS_S

DEFAULT_WINDOW_S = 300
MAX_FOR_S = 86_400.0
STATS_METRICS = (
    "error_rate",
    "request_rate",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "latency_p99",
    "outcome_rate",
)
DRIFT_METRICS = ("drift_psi_max", "drift_js_max", "drift_ks_max")
SHADOW_METRICS = ("shadow_disagreement",)
METRICS = (*STATS_METRICS, *DRIFT_METRICS, *SHADOW_METRICS)
UPDATABLE_FIELDS = (
    "display_name",
    "metric",
    "series",
    "comparator",
    "threshold",
    "window_seconds",
    "for_seconds",
    "webhook_url",
    "disabled",
)
# Fields whose change makes the rule a different condition: its alert starts over.
CONDITION_FIELDS = ("metric", "series", "comparator", "threshold", "window_seconds", "for_seconds")


class Comparator(enum.Enum):
    GREATER_THAN = ">"
    GREATER_OR_EQUAL = ">="
    LESS_THAN = "<"
    LESS_OR_EQUAL = "<="

    def holds(self, value: float, threshold: float) -> bool:
        if self is Comparator.GREATER_THAN:
            return value > threshold
        if self is Comparator.GREATER_OR_EQUAL:
            return value >= threshold
        if self is Comparator.LESS_THAN:
            return value < threshold
        return value <= threshold


@dataclass(slots=True)
class AlertRule:
    """A rule as stored. Times are epoch seconds."""

    rule_id: str
    display_name: str
    metric: str
    series: SeriesKey
    comparator: Comparator | None
    threshold: float
    window_s: int = DEFAULT_WINDOW_S
    for_s: float = 0.0
    webhook_url: str = ""
    disabled: bool = False
    create_time: float = 0.0
    update_time: float = 0.0
    etag: str = ""

    @property
    def name(self) -> str:
        return f"rules/{self.rule_id}"

    def holds(self, value: float) -> bool:
        """Whether the condition is true for `value` (a validated rule has a comparator)."""
        assert self.comparator is not None
        return self.comparator.holds(value, self.threshold)

    def condition(self) -> tuple[object, ...]:
        return (
            self.metric,
            self.series,
            self.comparator,
            self.threshold,
            self.window_s,
            self.for_s,
        )


def rule_id_of(name: str, field_name: str = "name") -> str:
    """The `{rule}` of `rules/{rule}`; INVALID_ARGUMENT otherwise."""
    prefix, _, rule_id = name.partition("/")
    if prefix != "rules" or not IDENTIFIER.match(rule_id):
        raise InvalidArgumentError(
            f"{field_name} must be `rules/{{rule}}` with a lowercase identifier (1-63 "
            f"letters, digits and '-', starting with a letter), got {name!r}",
            field=field_name,
        )
    return rule_id


def check_rule_id(rule_id: str, field_name: str = "rule_id") -> None:
    if not IDENTIFIER.match(rule_id):
        raise InvalidArgumentError(
            f"{field_name} must be 1-63 lowercase letters, digits and '-', starting with a "
            f"letter and not ending with '-', got {rule_id!r}",
            field=field_name,
        )


def _series_violations(series: SeriesKey, path: str, out: list[FieldViolation]) -> None:
    if series.model and model_id(series.model) is None:
        out.append(
            FieldViolation(f"{path}.model", f"must be `models/{{model}}`, got {series.model!r}")
        )
    if series.version < 0:
        out.append(FieldViolation(f"{path}.version", "must be 0 (any) or a positive version"))
    if series.endpoint and endpoint_id(series.endpoint) is None:
        out.append(
            FieldViolation(
                f"{path}.endpoint", f"must be `endpoints/{{endpoint}}`, got {series.endpoint!r}"
            )
        )
    if series.variant and not LABEL.match(series.variant):
        out.append(FieldViolation(f"{path}.variant", f"is not a valid name: {series.variant!r}"))
    if series.source and series.source not in SOURCES:
        out.append(
            FieldViolation(f"{path}.source", f"must be one of {', '.join(SOURCES)} or empty")
        )


def _webhook_problem(url: str) -> str | None:
    if len(url) > 2048:
        return "must be at most 2048 characters"
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"must be an http:// or https:// URL with a host, got {url!r}"
    return None


def _display_name_problem(display_name: str) -> str | None:
    if not display_name.strip():
        return "is required"
    if len(display_name) > 200:
        return "must be at most 200 characters"
    return None


def _metric_violations(rule: AlertRule, path: str, out: list[FieldViolation]) -> None:
    """An unknown metric; a known one whose series lacks what it is computed from."""
    if rule.metric not in METRICS:
        out.append(
            FieldViolation(
                f"{path}.metric",
                f"unknown metric {rule.metric!r}; expected one of {', '.join(METRICS)}",
            )
        )
    _series_violations(rule.series, f"{path}.series", out)
    if rule.metric in DRIFT_METRICS and (not rule.series.model or not rule.series.version):
        out.append(
            FieldViolation(f"{path}.series", f"{rule.metric} needs series.model and series.version")
        )
    if rule.metric in SHADOW_METRICS and not rule.series.endpoint:
        out.append(FieldViolation(f"{path}.series.endpoint", f"{rule.metric} needs an endpoint"))


def _threshold_problem(metric: str, threshold: float) -> str | None:
    if not math.isfinite(threshold):
        return f"must be finite, got {threshold}"
    if metric in ("error_rate", "outcome_rate", "shadow_disagreement") and not (
        0.0 <= threshold <= 1.0
    ):
        return f"{metric} is a fraction: the threshold must be in [0, 1], got {threshold}"
    if threshold < 0.0 and metric in METRICS:
        return f"{metric} is never negative: a negative threshold cannot be meant"
    return None


def rule_violations(rule: AlertRule, path: str = "rule") -> list[FieldViolation]:
    """Everything wrong with `rule` (with its window already defaulted)."""
    out: list[FieldViolation] = []
    problem = _display_name_problem(rule.display_name)
    if problem:
        out.append(FieldViolation(f"{path}.display_name", problem))
    _metric_violations(rule, path, out)
    if rule.comparator is None:
        out.append(
            FieldViolation(
                f"{path}.comparator",
                "is required: GREATER_THAN, GREATER_OR_EQUAL, LESS_THAN or LESS_OR_EQUAL",
            )
        )
    problem = _threshold_problem(rule.metric, rule.threshold)
    if problem:
        out.append(FieldViolation(f"{path}.threshold", problem))
    if rule.window_s not in WINDOWS_S:
        out.append(
            FieldViolation(
                f"{path}.window_seconds",
                f"must be one of {', '.join(map(str, WINDOWS_S))} (0 for {DEFAULT_WINDOW_S}), "
                f"got {rule.window_s}",
            )
        )
    if not (math.isfinite(rule.for_s) and 0.0 <= rule.for_s <= MAX_FOR_S):
        out.append(
            FieldViolation(
                f"{path}.for_seconds", f"must be in [0, {MAX_FOR_S:.0f}], got {rule.for_s}"
            )
        )
    if rule.webhook_url:
        problem = _webhook_problem(rule.webhook_url)
        if problem:
            out.append(FieldViolation(f"{path}.webhook_url", problem))
    return out


def validate_rule(rule: AlertRule, path: str = "rule") -> None:
    """INVALID_ARGUMENT listing every problem of `rule`, or nothing."""
    violations = rule_violations(rule, path)
    if violations:
        raise violations_error(violations, "alert rule")


def apply_update(current: AlertRule, patch: AlertRule, paths: list[str]) -> AlertRule:
    """`current` with the fields named in `paths` taken from `patch` (AIP-134)."""
    unknown = [p for p in paths if p not in UPDATABLE_FIELDS]
    if unknown:
        raise InvalidArgumentError(
            f"update_mask names fields that cannot be updated: {', '.join(unknown)}; "
            f"updatable: {', '.join(UPDATABLE_FIELDS)}",
            field="update_mask",
        )
    attributes = {
        "display_name": "display_name",
        "metric": "metric",
        "series": "series",
        "comparator": "comparator",
        "threshold": "threshold",
        "window_seconds": "window_s",
        "for_seconds": "for_s",
        "webhook_url": "webhook_url",
        "disabled": "disabled",
    }
    changes = {attributes[p]: getattr(patch, attributes[p]) for p in paths}
    return replace(current, **changes)
