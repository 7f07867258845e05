"""The routing headers: the contract between Envoy (configured by the router's xDS and its
Lua filter, deploy/envoy/modelhub.lua), inference and the monitor (docs/data-plane.md).

Envoy adds to each routed request which endpoint and variant it is for and the version to
run (`x-modelhub-target: {model}:{version}`), the endpoint's fallback
(`x-modelhub-fallback: {variant}={model}:{version}`, served on Envoy's retry), whether it
is a shadow copy, and on a mirrored primary the shadows it was sent to
(`x-modelhub-mirrored: {shadow}={model}:{version},…`, the monitor's `mirrored_to`). The
Lua filter spells these names too: change none of them alone.
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
# `x-modelhub-mirror-{i}`: the cluster of the i-th sampled shadow (the Lua filter's).
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


def parse_target(value: str, header: str = HEADER_TARGET) -> tuple[str, str]:
    """`{model}:{version}` (or `models/{model}:{version}`) → (model id, version), both
    non-empty; INVALID_ARGUMENT on `header` otherwise. Neither is checked further: the
    version is a reference for the caller to check, the model is looked up."""
    model, sep, version = value.strip().rpartition(":")
    model = bare_id(model, MODELS)
    if not sep or not model or not version:
        raise InvalidArgumentError(
            f"header {header} must be `{{model}}:{{version}}`, got {value[:_SHOWN]!r}",
            field=header,
        )
    return model, version


def parse_named_target(
    value: str, header: str = HEADER_FALLBACK, what: str = "variant"
) -> tuple[str, str, str]:
    """`{name}={model}:{version}` → (name, model id, version), the target checked as
    `parse_target` checks it; INVALID_ARGUMENT on `header` when the name (`what`: a
    variant's, a shadow's) or `=` is missing."""
    name, sep, target = value.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InvalidArgumentError(
            f"header {header} must be `{{{what}}}={{model}}:{{version}}`, got {value[:_SHOWN]!r}",
            field=header,
        )
    model, version = parse_target(target, header)
    return name, model, version
