"""Resource ids, names and version references: the registry's rules, the one set every
service parses them with (AIP-122 style).

* An id (models, endpoints, variants, shadows, deployments, aliases): lowercase letters,
  digits and hyphens, starting with a letter, not ending with a hyphen, at most 63
  characters.
* Names: `models/{model}`, `models/{model}/versions/{n}` (n = 1, 2, 3 …),
  `models/{model}@{alias}`, `models/{model}/aliases/{alias}`, `endpoints/{endpoint}`,
  `deployments/{deployment}`.
* Free-form references (the CLI, the client): `fraud@champion`, `fraud:3`,
  `fraud/versions/3`, the names above, and a bare `fraud` for `fraud@latest`.

The parsers raise `InvalidArgumentError` naming the field; `id_in` answers None instead,
for hot paths that count bad input rather than refuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelhub.common.errors import InvalidArgumentError

RESOURCE_ID = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")

MODELS = "models/"
ENDPOINTS = "endpoints/"
DEPLOYMENTS = "deployments/"
LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})


def is_resource_id(value: str) -> bool:
    return RESOURCE_ID.fullmatch(value) is not None


def is_decimal(text: str, max_digits: int = 18) -> bool:
    """Whether `text` is a non-negative integer written in 1 to `max_digits` ASCII digits
    (version numbers, counts in headers). Not `str.isdigit()`, which also takes "²" and
    "١٢" — and int() refuses those, as it refuses more than 4300 digits."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


def is_version_reference(text: str) -> bool:
    """How a request may name a version of a model: "" (its default), a version number,
    or an alias (an id: `champion`, `latest`)."""
    return not text or is_decimal(text) or is_resource_id(text)


def _shown(value: str, limit: int = 70) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def check_id(value: str, what: str, field: str) -> str:
    """Validate an identifier: 1-63 of [a-z0-9-], starting with a letter, no trailing '-'."""
    if not value:
        raise InvalidArgumentError(f"{what} is required", field=field)
    if not is_resource_id(value):
        raise InvalidArgumentError(
            f"{what} {_shown(value)!r} is not valid: use 1-63 lowercase letters, digits and "
            "'-', starting with a letter and not ending with '-' (e.g. 'fraud-detector')",
            field=field,
        )
    return value


def id_in(name: str, collection: str) -> str | None:
    """The id of `{collection}{id}` (e.g. `models/fraud` with `models/`), or None when
    `name` is not such a name."""
    if not name.startswith(collection):
        return None
    ident = name[len(collection) :]
    return ident if is_resource_id(ident) else None


def _parse(name: str, prefix: str, what: str, field: str) -> str:
    if not name.startswith(prefix):
        raise InvalidArgumentError(
            f"{field} {name[:100]!r} is not a {what} name: expected '{prefix}{{id}}'", field=field
        )
    return check_id(name[len(prefix) :], f"{what} id", field)


def model_id(name: str, field: str = "name") -> str:
    """`models/{model}` → model id."""
    return _parse(name, MODELS, "model", field)


def deployment_id(name: str, field: str = "name") -> str:
    """`deployments/{deployment}` → deployment id."""
    return _parse(name, DEPLOYMENTS, "deployment", field)


def endpoint_id(name: str, field: str = "name") -> str:
    """`endpoints/{endpoint}` → endpoint id."""
    return _parse(name, ENDPOINTS, "endpoint", field)


def bare_id(value: str, collection: str = MODELS) -> str:
    """The id of `{collection}{id}`, or `value` as it is without that prefix (a bare id):
    `models/fraud` and `fraud` → `fraud`. Unchecked: callers that need an id check it."""
    return value.removeprefix(collection)


def qualified_name(value: str, collection: str = MODELS) -> str:
    """`{collection}{id}` from the id or from the name itself: `fraud` and `models/fraud`
    → `models/fraud`. Unchecked, like `bare_id`."""
    return value if value.startswith(collection) else f"{collection}{value}"


def model_name(model: str) -> str:
    return f"{MODELS}{model}"


def version_name(model: str, version: int) -> str:
    return f"{MODELS}{model}/versions/{version}"


def alias_name(model: str, alias: str) -> str:
    return f"{MODELS}{model}/aliases/{alias}"


def endpoint_name(endpoint: str) -> str:
    return f"{ENDPOINTS}{endpoint}"


def deployment_name(deployment: str) -> str:
    return f"{DEPLOYMENTS}{deployment}"


@dataclass(frozen=True, slots=True)
class VersionRef:
    """A reference to a version: by number (`version`) or by alias (`alias`, incl. latest)."""

    model: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return version_name(self.model, self.version)
        return f"{MODELS}{self.model}@{self.alias}"


def version_number(text: str, field: str) -> int:
    """A version number written in decimal (1, 2, 3 …); INVALID_ARGUMENT on `field`
    otherwise."""
    if not is_decimal(text) or int(text) < 1:
        raise InvalidArgumentError(
            f"version {text[:40]!r} is not valid: versions are numbered 1, 2, 3 …", field=field
        )
    return int(text)


def _not_a_version_name(name: str, field: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{field} {name[:100]!r} is not a version name: expected "
        "'models/{model}/versions/{version}' or 'models/{model}@{alias}'",
        field=field,
    )


def parse_version_name(name: str, field: str = "name") -> VersionRef:
    """Parse `models/{m}/versions/{n}` or `models/{m}@{alias}`."""
    if not name.startswith(MODELS):
        raise _not_a_version_name(name, field)
    rest = name[len(MODELS) :]
    if "@" in rest:
        model, _, alias = rest.partition("@")
        check_id(model, "model id", field)
        check_id(alias, "alias", field)
        return VersionRef(model, alias=alias)
    model, sep, number = rest.partition("/versions/")
    if not sep:
        raise _not_a_version_name(name, field)
    check_id(model, "model id", field)
    return VersionRef(model, version=version_number(number, field))


def parse_reference(reference: str, field: str = "reference") -> VersionRef:
    """Free-form references: `fraud@champion`, `fraud/versions/3`, `fraud:3`, `fraud@latest`,
    `models/fraud/versions/3`, `models/fraud@champion`; a bare `fraud` means `fraud@latest`."""
    text = reference.strip()
    if not text:
        raise InvalidArgumentError("reference is required", field=field)
    if not text.startswith(MODELS):
        text = MODELS + text
    rest = text[len(MODELS) :]
    if "@" in rest or "/versions/" in rest:
        return parse_version_name(text, field)
    if ":" in rest:
        model, _, number = rest.partition(":")
        check_id(model, "model id", field)
        return VersionRef(model, version=version_number(number, field))
    check_id(rest, "model id", field)
    return VersionRef(rest, alias=LATEST)


def parse_alias_name(name: str, field: str = "name") -> tuple[str, str]:
    """`models/{m}/aliases/{a}` → (model, alias)."""
    if not name.startswith(MODELS) or "/aliases/" not in name:
        raise InvalidArgumentError(
            f"{field} {name[:100]!r} is not an alias name: expected "
            "'models/{model}/aliases/{alias}'",
            field=field,
        )
    model, _, alias = name[len(MODELS) :].partition("/aliases/")
    return check_id(model, "model id", field), check_id(alias, "alias", field)


def model_of(name: str, field: str = "name") -> str:
    """The model a model-scoped name belongs to: `models/{m}`, `models/{m}/versions/{n}`,
    `models/{m}@{alias}` and `models/{m}/aliases/{a}` all → `m` (each checked whole)."""
    rest = name[len(MODELS) :] if name.startswith(MODELS) else ""
    if "/aliases/" in rest:
        return parse_alias_name(name, field)[0]
    if "@" in rest or "/versions/" in rest:
        return parse_version_name(name, field).model
    return model_id(name, field)
