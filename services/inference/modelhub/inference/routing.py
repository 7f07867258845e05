"""What Envoy decided for a request (docs/data-plane.md), in domain terms.

Envoy routes; inference reads the decision from request headers that the edge (`api`)
hands over as a plain mapping: which endpoint and variant the request is for, which
model version to run (overriding the body's `model_name`/`model_version`), the fallback
to serve on Envoy's retry after UNAVAILABLE, and whether the request is a shadow copy or a
mirrored primary. Requests without these headers are direct calls: the body names a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from modelhub.common.errors import InvalidArgumentError, NotFoundError
from modelhub.common.names import (
    ENDPOINTS,
    MODELS,
    bare_id,
    is_decimal,
    is_resource_id,
    is_version_reference,
    model_name,
    qualified_name,
)
from modelhub.common.routing_headers import (
    HEADER_ATTEMPT,
    HEADER_ENDPOINT,
    HEADER_FALLBACK,
    HEADER_KEY_HASH,
    HEADER_MIRRORED,
    HEADER_REQUEST_ID,
    HEADER_SHADOW,
    HEADER_TARGET,
    HEADER_VARIANT,
    format_named_target,
    parse_named_target,
    parse_target,
    split_named_target,
)

# The headers inference reads (the rest of the request's metadata is not looked at).
HEADERS = frozenset(
    (
        HEADER_ENDPOINT,
        HEADER_VARIANT,
        HEADER_TARGET,
        HEADER_FALLBACK,
        HEADER_ATTEMPT,
        HEADER_SHADOW,
        HEADER_MIRRORED,
        HEADER_KEY_HASH,
        HEADER_REQUEST_ID,
    )
)

# Response parameters and trailing metadata naming what served a request (the names the
# Python router used, so that clients keep reading them where they did).
PARAM_ENDPOINT = "modelhub.endpoint"
PARAM_VARIANT = "modelhub.variant"
PARAM_MODEL = "modelhub.model"
PARAM_VERSION = "modelhub.version"
TRAILER_ENDPOINT = "modelhub-endpoint"
TRAILER_VARIANT = "modelhub-variant"
TRAILER_MODEL = "modelhub-model"
TRAILER_VERSION = "modelhub-version"

_MAX_HEADER = 256


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision a request carries (all empty for a direct call).

    `model`/`version` are the target to run ("": the body's); when `fallback` is true they
    (and `variant`) are the endpoint's fallback, served on Envoy's retry."""

    endpoint: str = ""
    variant: str = ""
    model: str = ""
    version: str = ""
    fallback: bool = False
    shadow: bool = False
    mirrored: bool = False
    # The shadows Envoy mirrored this primary to, as `{shadow}={model}:{version}`, so the
    # monitor can count a shadow that never answers.
    mirrored_to: tuple[str, ...] = ()
    key_hash: str = ""
    request_id: str = ""

    @property
    def routed(self) -> bool:
        """Whether an endpoint routed the request (its variant is then meaningful)."""
        return bool(self.endpoint)


DIRECT = Route()


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


_MAX_MIRRORS = 8


def _mirrors(value: str) -> tuple[bool, tuple[str, ...]]:
    """`x-modelhub-mirrored`: `1`, or the shadows as `{name}={model}:{version}` (comma
    separated). Malformed entries are left out: this header only feeds the shadow report."""
    value = value.strip()
    if not value:
        return False, ()
    if _flag(value):
        return True, ()
    found = []
    for entry in value[: _MAX_HEADER * _MAX_MIRRORS].split(",")[:_MAX_MIRRORS]:
        named = split_named_target(entry.strip())
        if named is None:
            continue
        name, model, version = named
        if is_resource_id(name) and is_resource_id(model) and is_decimal(version):
            found.append(format_named_target(name, model, version))
    return True, tuple(found)


def parse_route(headers: Mapping[str, str]) -> Route:
    """The route of a request from its headers (lowercase names; missing: not routed)."""
    if not headers:
        return DIRECT
    get = headers.get
    endpoint = get(HEADER_ENDPOINT, "").strip()[:_MAX_HEADER]
    if endpoint:
        endpoint = qualified_name(endpoint, ENDPOINTS)
    variant = get(HEADER_VARIANT, "").strip()[:_MAX_HEADER]
    model = version = ""
    target = get(HEADER_TARGET, "")
    if target:
        model, version = parse_target(target, HEADER_TARGET)
    fallback = False
    spec = get(HEADER_FALLBACK, "")
    if spec:
        attempt_text = get(HEADER_ATTEMPT, "1").strip()
        attempt = int(attempt_text) if is_decimal(attempt_text) else 1
        if attempt >= 2:
            variant, model, version = parse_named_target(spec, HEADER_FALLBACK)
            fallback = True
    mirrored, mirrored_to = _mirrors(get(HEADER_MIRRORED, ""))
    return Route(
        endpoint=endpoint,
        variant=variant,
        model=model,
        version=version,
        fallback=fallback,
        shadow=_flag(get(HEADER_SHADOW, "")),
        mirrored=mirrored,
        mirrored_to=mirrored_to,
        key_hash=get(HEADER_KEY_HASH, "").strip()[:_MAX_HEADER],
        request_id=get(HEADER_REQUEST_ID, "").strip()[:_MAX_HEADER],
    )


def model_reference(name: str, version: str, route: Route) -> tuple[str, str]:
    """The (model id, version reference) a request runs: the route's target, else the
    body's name (`fraud` or `models/fraud`). A name of an endpoint (`endpoints/fraud`)
    without a target never got routed: NOT_FOUND. The version reference is "" (the
    model's default), a version number or an alias: anything else is INVALID_ARGUMENT."""
    if route.model:
        return route.model, version_reference(route.version, HEADER_TARGET)
    if name.startswith(MODELS):
        return bare_id(name, MODELS), version_reference(version)
    if name.startswith(ENDPOINTS):
        raise NotFoundError(
            f"no endpoint or model named {name!r} here: endpoints are served through the "
            "front door (Envoy), which routes them to a model version",
            metadata={"model": name},
        )
    return name, version_reference(version)


def version_reference(version: str, field: str = "model_version") -> str:
    """`version` if it can name a version, else INVALID_ARGUMENT on `field`."""
    if is_version_reference(version):
        return version
    raise InvalidArgumentError(
        f"{field} {version[:_MAX_HEADER]!r} is neither a version number (ASCII digits, at "
        "most 18) nor an alias (lowercase letters, digits and '-'); leave it empty for the "
        "model's default version",
        field=field,
    )


def message_route(route: Route, name: str, sequence: int) -> Route:
    """The route of message `sequence` of a stream that Envoy routed as a whole by its
    headers: the stream's decision for messages that name its endpoint (or no model), a
    direct call for messages naming another model. Each message gets its own request id
    (`{x-request-id}.{sequence}`), so that events and outcomes tell them apart."""
    request_id = f"{route.request_id}.{sequence}" if route.request_id else ""
    if route.routed and name and bare_id(name, ENDPOINTS) != bare_id(route.endpoint, ENDPOINTS):
        return Route(key_hash=route.key_hash, request_id=request_id)
    return replace(route, request_id=request_id)


def served_labels(route: Route, model: str, version: int) -> list[tuple[str, str]]:
    """(parameter, value) pairs naming what served a request, in a fixed order; the
    trailers are the same values under `TRAILERS`."""
    labels: list[tuple[str, str]] = []
    if route.routed:
        labels.append((PARAM_ENDPOINT, route.endpoint))
    if route.variant:
        labels.append((PARAM_VARIANT, route.variant))
    labels.append((PARAM_MODEL, model_name(model)))
    labels.append((PARAM_VERSION, str(version)))
    return labels


TRAILERS = {
    PARAM_ENDPOINT: TRAILER_ENDPOINT,
    PARAM_VARIANT: TRAILER_VARIANT,
    PARAM_MODEL: TRAILER_MODEL,
    PARAM_VERSION: TRAILER_VERSION,
}
