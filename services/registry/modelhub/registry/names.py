"""Resource identifiers and names: validation and parsing (AIP-122 style).

The rules for ids, names and version references are `modelhub.common.names` (every
service parses the registry's names with them) and are re-exported here; this module adds
what only the registry checks: tags, labels, text and metadata sizes, digests."""

from __future__ import annotations

import re

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.filestore import is_digest
from modelhub.common.names import (
    LATEST,
    RESERVED_ALIASES,
    VersionRef,
    alias_name,
    check_id,
    deployment_id,
    deployment_name,
    endpoint_id,
    endpoint_name,
    model_id,
    model_name,
    parse_alias_name,
    parse_reference,
    parse_version_name,
    version_name,
)

__all__ = [
    "LATEST",
    "RESERVED_ALIASES",
    "VersionRef",
    "alias_name",
    "check_id",
    "check_labels",
    "check_metadata",
    "check_sha256",
    "check_tags",
    "check_text",
    "deployment_id",
    "deployment_name",
    "endpoint_id",
    "endpoint_name",
    "model_id",
    "model_name",
    "parse_alias_name",
    "parse_reference",
    "parse_version_name",
    "version_name",
]

# Matched with fullmatch: `$` would also match before a trailing newline.
_TAG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


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


def label_filter(value: str, field: str = "label") -> tuple[str, str] | None:
    """A `key=value` label filter as (key, value); None when empty."""
    if not value:
        return None
    key, sep, wanted = value.partition("=")
    if not sep:
        raise InvalidArgumentError(
            f"{field} {value!r} is not valid: use key=value (e.g. owner=alice)", field=field
        )
    check_labels({key: wanted}, field)
    return key, wanted


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
    if not is_digest(value):
        raise InvalidArgumentError(
            f"{field} must be 64 lowercase hex characters, got {value[:80]!r}", field=field
        )
    return value
