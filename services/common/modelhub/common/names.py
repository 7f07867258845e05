"""The one rule for resource ids (models, endpoints, variants, shadows, deployments), as the
registry enforces it (`modelhub.registry.names`): lowercase letters, digits and hyphens,
starting with a letter, not ending with a hyphen, at most 63 characters."""

from __future__ import annotations

import re

RESOURCE_ID = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")


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
