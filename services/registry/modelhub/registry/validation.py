"""Validation of deployments and endpoints before they are stored."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import replace

from modelhub.common.errors import InvalidArgumentError
from modelhub.registry.names import RESERVED_ALIASES, check_id, check_labels, check_text
from modelhub.registry.resources import (
    AuditPolicy,
    Deployment,
    Endpoint,
    KeySource,
    StickyKey,
    VersionSelector,
)

MAX_VARIANTS = 64
MAX_REDACTED_INPUTS = 64
MAX_INPUT_NAME = 256
MAX_VERSIONS_PER_DEPLOYMENT = 16
MAX_INSTANCES = 64
# Matched with fullmatch: `$` would also match before a trailing newline.
_HEADER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
_ADDRESS = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def check_selector(selector: VersionSelector, field: str) -> VersionSelector:
    if selector.version is not None and selector.alias is not None:
        raise InvalidArgumentError("set either version or alias, not both", field=field)
    if selector.version is not None and selector.version < 1:
        raise InvalidArgumentError(
            f"version must be 1 or more, got {selector.version}", field=f"{field}.version"
        )
    if selector.alias is not None and selector.alias not in RESERVED_ALIASES:
        check_id(selector.alias, "alias", f"{field}.alias")
    return selector


def check_pool(pool: list[str], field: str) -> list[str]:
    for address in pool:
        match = _ADDRESS.fullmatch(address)
        if match is None or not 0 < int(match.group(1)) < 65536:
            raise InvalidArgumentError(f"backend address {address!r} is not host:port", field=field)
    return pool


def check_audit(policy: AuditPolicy, field: str = "endpoint.audit") -> AuditPolicy:
    """A finite sample rate in [0, 1] and at most MAX_REDACTED_INPUTS distinct input names
    of printable characters; names are kept in the order given, duplicates dropped."""
    rate = policy.sample_rate
    if not math.isfinite(rate) or not 0 <= rate <= 1:
        raise InvalidArgumentError(
            f"audit sample_rate must be a number within [0, 1] (1 records every request), "
            f"got {rate}",
            field=f"{field}.sample_rate",
        )
    names = list(dict.fromkeys(policy.redact_inputs))
    if len(names) > MAX_REDACTED_INPUTS:
        raise InvalidArgumentError(
            f"audit redact_inputs names {len(names)} inputs; at most {MAX_REDACTED_INPUTS}",
            field=f"{field}.redact_inputs",
        )
    for i, name in enumerate(names):
        if not 0 < len(name) <= MAX_INPUT_NAME or not name.isprintable():
            raise InvalidArgumentError(
                f"audit redact_inputs[{i}] must be an input name of 1-{MAX_INPUT_NAME} "
                f"printable characters, got {name[:MAX_INPUT_NAME]!r}",
                field=f"{field}.redact_inputs",
            )
    return replace(policy, redact_inputs=names)


def validate_deployment(dep: Deployment) -> Deployment:
    check_id(dep.id, "deployment id", "deployment_id")
    check_id(dep.model, "model id", "deployment.model")
    if not dep.versions:
        raise InvalidArgumentError(
            "a deployment needs at least one version selector", field="deployment.versions"
        )
    if len(dep.versions) > MAX_VERSIONS_PER_DEPLOYMENT:
        raise InvalidArgumentError(
            f"at most {MAX_VERSIONS_PER_DEPLOYMENT} versions per deployment",
            field="deployment.versions",
        )
    for i, selector in enumerate(dep.versions):
        check_selector(selector, f"deployment.versions[{i}]")
    if dep.instance_count < 0 or dep.instance_count > MAX_INSTANCES:
        raise InvalidArgumentError(
            f"instance_count must be between 1 and {MAX_INSTANCES}",
            field="deployment.instance_count",
        )
    dep.batching.validate("deployment.batching")
    dep.runtime.validate("deployment.runtime")
    check_labels(dep.labels, "deployment.labels")
    return replace(dep, instance_count=dep.instance_count or 1)


def _check_variants(ep: Endpoint, seen: set[str]) -> None:
    total = 0.0
    for i, variant in enumerate(ep.variants):
        field = f"endpoint.variants[{i}]"
        check_id(variant.name, "variant name", f"{field}.name")
        if variant.name in seen:
            raise InvalidArgumentError(
                f"variant name {variant.name!r} is used twice", field=f"{field}.name"
            )
        seen.add(variant.name)
        check_id(variant.model.removeprefix("models/"), "model id", f"{field}.model")
        check_selector(variant.selector, f"{field}.selector")
        if not math.isfinite(variant.weight) or variant.weight < 0:
            raise InvalidArgumentError(
                f"weight of variant {variant.name!r} must be a finite number >= 0, "
                f"got {variant.weight}",
                field=f"{field}.weight",
            )
        check_pool(variant.pool, f"{field}.pool")
        total += variant.weight
    if not math.isfinite(total):
        # Each weight is finite but the sum overflows: the cumulative ranges traffic is split
        # by would be infinite, sending every request to one variant.
        raise InvalidArgumentError(
            f"the variants' weights sum to {total}, not a finite number: use smaller "
            "weights (only their ratios matter, e.g. 90 and 10)",
            field="endpoint.variants",
        )
    if total <= 0:
        raise InvalidArgumentError(
            "the variants' weights sum to 0: give at least one variant a positive weight",
            field="endpoint.variants",
        )


def _check_shadows(ep: Endpoint, seen: set[str]) -> None:
    for i, shadow in enumerate(ep.shadows):
        field = f"endpoint.shadows[{i}]"
        check_id(shadow.name, "shadow name", f"{field}.name")
        if shadow.name in seen:
            raise InvalidArgumentError(
                f"name {shadow.name!r} is used twice among variants and shadows",
                field=f"{field}.name",
            )
        seen.add(shadow.name)
        check_id(shadow.model.removeprefix("models/"), "model id", f"{field}.model")
        check_selector(shadow.selector, f"{field}.selector")
        if not math.isfinite(shadow.sample_rate) or not 0 <= shadow.sample_rate <= 1:
            raise InvalidArgumentError(
                f"sample_rate of shadow {shadow.name!r} must be within [0, 1], "
                f"got {shadow.sample_rate}",
                field=f"{field}.sample_rate",
            )
        check_pool(shadow.pool, f"{field}.pool")


def _check_sticky_key(key: StickyKey) -> None:
    if key.source == KeySource.METADATA and (
        not _HEADER.fullmatch(key.name) or key.name.startswith("grpc-")
    ):
        raise InvalidArgumentError(
            f"sticky key metadata name {key.name!r} is not a valid lowercase header name",
            field="endpoint.sticky_key.name",
        )
    if key.source == KeySource.PARAMETER and not 0 < len(key.name) <= 128:
        raise InvalidArgumentError(
            "sticky key parameter name must be 1-128 characters",
            field="endpoint.sticky_key.name",
        )


def validate_endpoint(ep: Endpoint) -> Endpoint:
    check_id(ep.id, "endpoint id", "endpoint_id")
    check_text(ep.description, "endpoint.description")
    check_labels(ep.labels, "endpoint.labels")
    if not ep.variants:
        raise InvalidArgumentError(
            "an endpoint needs at least one variant", field="endpoint.variants"
        )
    if len(ep.variants) + len(ep.shadows) > MAX_VARIANTS:
        raise InvalidArgumentError(
            f"at most {MAX_VARIANTS} variants and shadows per endpoint", field="endpoint.variants"
        )
    seen: set[str] = set()
    _check_variants(ep, seen)
    _check_shadows(ep, seen)
    if ep.fallback and ep.fallback not in {v.name for v in ep.variants}:
        raise InvalidArgumentError(
            f"fallback {ep.fallback!r} names no variant of this endpoint",
            field="endpoint.fallback",
        )
    if ep.sticky_key is not None:
        _check_sticky_key(ep.sticky_key)
    if len(ep.salt) > 128:
        raise InvalidArgumentError("salt is longer than 128 characters", field="endpoint.salt")
    return replace(
        ep,
        audit=check_audit(ep.audit) if ep.audit is not None else None,
        salt=ep.salt or uuid.uuid4().hex,
        variants=[replace(v, model=v.model.removeprefix("models/")) for v in ep.variants],
        shadows=[replace(s, model=s.model.removeprefix("models/")) for s in ep.shadows],
    )


# EvaluationReport fields (JSON form) that must be finite numbers ≥ 0.
_REPORT_NUMBERS = (
    "max_abs_diff",
    "mean_abs_diff",
    "size_ratio",
    "latency_ratio_batch1",
    "throughput_ratio_batch1",
    "latency_ratio_best",
    "throughput_ratio_best",
)


def check_evaluation(report: dict[str, object], field: str) -> None:
    """A derivative's evaluation report: rows > 0, finite non-negative figures, an
    agreement in [0, 1], a validation source and where it was measured (≤ 1 KiB each)."""
    rows = int(str(report.get("rows", 0)))
    if rows <= 0:
        raise InvalidArgumentError("the report covers no validation rows", field=f"{field}.rows")
    for name in _REPORT_NUMBERS:
        value = float(str(report.get(name, 0.0)))
        if not math.isfinite(value) or value < 0:
            raise InvalidArgumentError(
                f"{name} must be a finite number ≥ 0, not {value}", field=f"{field}.{name}"
            )
    agreement = report.get("argmax_agreement")
    if agreement is not None and not 0.0 <= float(str(agreement)) <= 1.0:
        raise InvalidArgumentError(
            "argmax_agreement is a share in [0, 1]", field=f"{field}.argmax_agreement"
        )
    for name in ("validation", "measured_on"):
        check_text(str(report.get(name, "")), f"{field}.{name}", 1024)
    if not report.get("validation"):
        raise InvalidArgumentError(
            "say where the validation rows came from", field=f"{field}.validation"
        )
