"""Resource identifiers and names: validation and parsing (AIP-122 style)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.names import is_decimal, is_resource_id

# Matched with fullmatch: `$` would also match before a trailing newline.
_TAG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})


def check_id(value: str, what: str, field: str) -> str:
    """Validate an identifier: 1-63 of [a-z0-9-], starting with a letter, no trailing '-'."""
    if not value:
        raise InvalidArgumentError(f"{what} is required", field=field)
    if not is_resource_id(value):
        shown = value if len(value) <= 70 else value[:67] + "..."
        raise InvalidArgumentError(
            f"{what} {shown!r} is not valid: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-' (e.g. 'fraud-detector')",
            field=field,
        )
    return value


def check_tags(tags: list[str], field: str = "tags") -> list[str]:
    seen: list[str] = []
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise InvalidArgumentError(
                f"tag {tag!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' or "
                "'-', starting and ending with a letter or digit",
                field=field,
            )
        if tag not in seen:
            seen.append(tag)
    if len(seen) > 64:
        raise InvalidArgumentError("at most 64 tags are allowed", field=field)
    return seen


def check_labels(labels: dict[str, str], field: str = "labels") -> dict[str, str]:
    if len(labels) > 64:
        raise InvalidArgumentError("at most 64 labels are allowed", field=field)
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidArgumentError(
                f"label key {key!r} is not valid: use 1-63 lowercase letters, digits, '_', "
                "'.' or '-', starting with a letter",
                field=field,
            )
        if len(value) > 256:
            raise InvalidArgumentError(f"label {key!r} is longer than 256 characters", field=field)
    return dict(labels)


def check_text(value: str, field: str, limit: int = 4096) -> str:
    if len(value) > limit:
        raise InvalidArgumentError(f"{field} is longer than {limit} characters", field=field)
    return value


def check_metadata(values: dict[str, str], field: str = "metadata") -> dict[str, str]:
    if len(values) > 256:
        raise InvalidArgumentError(f"at most 256 {field} entries are allowed", field=field)
    for key, value in values.items():
        if not key or len(key) > 256:
            raise InvalidArgumentError(f"{field} keys must be 1-256 characters", field=field)
        if len(value) > 16384:
            raise InvalidArgumentError(
                f"{field} value of {key!r} is longer than 16384 characters", field=field
            )
    return dict(values)


def check_sha256(value: str, field: str = "sha256") -> str:
    if not _HEX64.fullmatch(value):
        raise InvalidArgumentError(
            f"{field} must be 64 lowercase hex characters, got {value[:80]!r}", field=field
        )
    return value


def _parse(name: str, prefix: str, what: str, field: str) -> str:
    if not name.startswith(prefix):
        raise InvalidArgumentError(
            f"{field} {name[:100]!r} is not a {what} name: expected '{prefix}{{id}}'", field=field
        )
    return check_id(name[len(prefix) :], f"{what} id", field)


def model_id(name: str, field: str = "name") -> str:
    """`models/{model}` → model id."""
    return _parse(name, "models/", "model", field)


def model_name(model: str) -> str:
    return f"models/{model}"


def deployment_id(name: str, field: str = "name") -> str:
    return _parse(name, "deployments/", "deployment", field)


def endpoint_id(name: str, field: str = "name") -> str:
    return _parse(name, "endpoints/", "endpoint", field)


@dataclass(frozen=True, slots=True)
class VersionRef:
    """A reference to a version: by number (`version`) or by alias (`alias`, incl. latest)."""

    model: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"models/{self.model}/versions/{self.version}"
        return f"models/{self.model}@{self.alias}"


def version_name(model: str, version: int) -> str:
    return f"models/{model}/versions/{version}"


def alias_name(model: str, alias: str) -> str:
    return f"models/{model}/aliases/{alias}"


def _version_number(text: str, field: str) -> int:
    if not is_decimal(text) or int(text) < 1:
        raise InvalidArgumentError(
            f"version {text[:40]!r} is not valid: versions are numbered 1, 2, 3 …", field=field
        )
    return int(text)


def parse_version_name(name: str, field: str = "name") -> VersionRef:
    """Parse `models/{m}/versions/{n}` or `models/{m}@{alias}`."""
    if not name.startswith("models/"):
        raise InvalidArgumentError(
            f"{field} {name[:100]!r} is not a version name: expected "
            "'models/{model}/versions/{version}' or 'models/{model}@{alias}'",
            field=field,
        )
    rest = name[len("models/") :]
    if "@" in rest:
        model, _, alias = rest.partition("@")
        check_id(model, "model id", field)
        check_id(alias, "alias", field)
        return VersionRef(model, alias=alias)
    model, sep, number = rest.partition("/versions/")
    if not sep:
        raise InvalidArgumentError(
            f"{field} {name[:100]!r} is not a version name: expected "
            "'models/{model}/versions/{version}' or 'models/{model}@{alias}'",
            field=field,
        )
    check_id(model, "model id", field)
    return VersionRef(model, version=_version_number(number, field))


def parse_reference(reference: str, field: str = "reference") -> VersionRef:
    """Free-form references: `fraud@champion`, `fraud/versions/3`, `fraud:3`, `fraud@latest`,
    `models/fraud/versions/3`, `models/fraud@champion`; a bare `fraud` means `fraud@latest`."""
    text = reference.strip()
    if not text:
        raise InvalidArgumentError("reference is required", field=field)
    if not text.startswith("models/"):
        text = "models/" + text
    rest = text[len("models/") :]
    if "@" in rest or "/versions/" in rest:
        return parse_version_name(text, field)
    if ":" in rest:
        model, _, number = rest.partition(":")
        check_id(model, "model id", field)
        return VersionRef(model, version=_version_number(number, field))
    check_id(rest, "model id", field)
    return VersionRef(rest, alias=LATEST)


def parse_alias_name(name: str, field: str = "name") -> tuple[str, str]:
    """`models/{m}/aliases/{a}` → (model, alias)."""
    if not name.startswith("models/") or "/aliases/" not in name:
        raise InvalidArgumentError(
            f"{field} {name[:100]!r} is not an alias name: expected "
            "'models/{model}/aliases/{alias}'",
            field=field,
        )
    model, _, alias = name[len("models/") :].partition("/aliases/")
    return check_id(model, "model id", field), check_id(alias, "alias", field)
