"""The routing headers: the contract between Envoy (configured by the router's xDS and its
routing filter, deploy/envoy/route_filter/modelhub_route.c), inference and the monitor
(docs/data-plane.md).

Envoy adds to each routed request which endpoint and variant it is for and the version to
run (`x-modelhub-target: {model}:{version}`), the endpoint's fallback
(`x-modelhub-fallback: {variant}={model}:{version}`, served on Envoy's retry), whether it
is a shadow copy, and on a mirrored primary the shadows it was sent to
(`x-modelhub-mirrored: {shadow}={model}:{version},…`, the monitor's `mirrored_to`). The
routing filter spells these names too: change none of them alone.
"""

from __future__ import annotations

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import MODELS, bare_id

HEADER_ENDPOINT = "x-modelhub-endpoint"
HEADER_VARIANT = "x-modelhub-variant"
HEADER_TARGET = "x-modelhub-target"
HEADER_FALLBACK = "x-modelhub-fallback"
HEADER_SHADOW = "x-modelhub-shadow"
HEADER_MIRRORED = "x-modelhub-mirrored"
HEADER_BUCKET = "x-modelhub-bucket"
HEADER_ROUTE = "x-modelhub-route"
HEADER_MODEL = "x-modelhub-model"
HEADER_KEY_HASH = "x-modelhub-key-hash"
# `x-modelhub-mirror-{i}`: the cluster of the i-th sampled shadow (the routing filter's).
HEADER_MIRROR_PREFIX = "x-modelhub-mirror-"
# Envoy's own: the attempt number of a request (2 and more on a retry).
HEADER_ATTEMPT = "x-envoy-attempt-count"
HEADER_REQUEST_ID = "x-request-id"

# How much of a bad header value an error message echoes.
_SHOWN = 256


def format_target(model: str, version: int | str) -> str:
    """The value naming a model version: `{model}:{version}` (the model's id)."""
    return f"{model}:{version}"


def format_named_target(name: str, model: str, version: int | str) -> str:
    """A variant's or shadow's target: `{name}={model}:{version}`."""
    return f"{name}={format_target(model, version)}"


def _split_target(value: str) -> tuple[str, str] | None:
    """`parse_target` without the error: None for a malformed value."""
    model, sep, version = value.strip().rpartition(":")
    model = bare_id(model, MODELS)
    if not sep or not model or not version:
        return None
    return model, version


def parse_target(value: str, header: str = HEADER_TARGET) -> tuple[str, str]:
    """`{model}:{version}` (or `models/{model}:{version}`) → (model id, version), both
    non-empty; INVALID_ARGUMENT on `header` otherwise. Neither is checked further: the
    version is a reference for the caller to check, the model is looked up."""
    found = _split_target(value)
    if found is None:
        raise InvalidArgumentError(
            f"header {header} must be `{{model}}:{{version}}`, got {value[:_SHOWN]!r}",
            field=header,
        )
    return found


def split_named_target(value: str) -> tuple[str, str, str] | None:
    """`{name}={model}:{version}` → (name, model id, version), the target read as
    `parse_target` reads it; None when the name or `=` is missing or the target is
    malformed. For values whose malformed entries are skipped, not refused."""
    name, sep, target = value.partition("=")
    name = name.strip()
    found = _split_target(target) if sep and name else None
    if found is None:
        return None
    return name, *found


def parse_named_target(
    value: str, header: str = HEADER_FALLBACK, what: str = "variant"
) -> tuple[str, str, str]:
    """`split_named_target`, with INVALID_ARGUMENT on `header` for a malformed value: the
    name (`what`: a variant's, a shadow's) or `=` missing, or the target as `parse_target`
    refuses it."""
    found = split_named_target(value)
    if found is not None:
        return found
    name, sep, target = value.partition("=")
    if sep and name.strip():
        parse_target(target, header)  # raises: the target is what is malformed
    raise InvalidArgumentError(
        f"header {header} must be `{{{what}}}={{model}}:{{version}}`, got {value[:_SHOWN]!r}",
        field=header,
    )
