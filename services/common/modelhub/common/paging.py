"""Opaque page tokens bound to the filters of the listing that issued them (AIP-158)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelhub.common.errors import InvalidArgumentError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgumentError("page_size must not be negative", field="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(filters: Mapping[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_token(position: Any, filters: Mapping[str, Any]) -> str:
    """A token resuming after `position` for a listing with these filters."""
    raw = json.dumps({"p": position, "f": _fingerprint(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, filters: Mapping[str, Any]) -> Any:
    """The position in `token`, or None for an empty token."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, fingerprint = data["p"], data["f"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgumentError(
            "page_token is not valid: pass the next_page_token of the previous response unchanged",
            field="page_token",
        ) from None
    if fingerprint != _fingerprint(filters):
        raise InvalidArgumentError(
            "page_token was issued for a listing with other filters: repeat the same filters, "
            "or start again without a token",
            field="page_token",
        )
    return position
