"""The one rule for resource ids (models, endpoints, variants, shadows, deployments), as the
registry enforces it (`modelhub/registry/names.py`): lowercase letters, digits and hyphens,
starting with a letter, not ending with a hyphen, at most 63 characters."""

from __future__ import annotations

import re

RESOURCE_ID = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_resource_id(value: str) -> bool:
    return RESOURCE_ID.fullmatch(value) is not None
