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


def _invalid() -> InvalidArgumentError:
    return InvalidArgumentError(
        "page_token is not valid: pass the next_page_token of the previous response unchanged",
        field="page_token",
    )


def decode_token(token: str, filters: Mapping[str, Any]) -> Any:
    """The position in `token` (any JSON value: prefer the typed `decode_str`,
    `decode_int` and `decode_ints`), or None for an empty token."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, fingerprint = data["p"], data["f"]
    except (ValueError, KeyError, TypeError):
        raise _invalid() from None
    if fingerprint != _fingerprint(filters):
        raise InvalidArgumentError(
            "page_token was issued for a listing with other filters: repeat the same filters, "
            "or start again without a token",
            field="page_token",
        )
    return position


# The fingerprint only binds a token to its filters; anyone can build one. A position of the
# wrong type would reach the query: the typed decoders refuse it like any invalid token.


def decode_str(token: str, filters: Mapping[str, Any]) -> str | None:
    """A text position (e.g. the last name of a page), or None for an empty token."""
    position: object = decode_token(token, filters)
    if position is None or isinstance(position, str):
        return position
    raise _invalid()


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid()
    return value


def decode_int(token: str, filters: Mapping[str, Any]) -> int | None:
    """An integer position (e.g. the last version number of a page), or None."""
    position: object = decode_token(token, filters)
    return None if position is None else _int(position)


def decode_ints(token: str, filters: Mapping[str, Any], count: int) -> tuple[int, ...] | None:
    """A position of `count` integers (e.g. a time and a row id), or None."""
    position: object = decode_token(token, filters)
    if position is None:
        return None
    if not isinstance(position, list) or len(position) != count:
        raise _invalid()
    return tuple(_int(value) for value in position)
