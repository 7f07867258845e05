"""Bearer-token authentication with three roles, configured from the environment.

Off by default (no tokens configured: every caller is an anonymous admin, fit for local
use). With tokens configured every RPC needs `authorization: Bearer <token>` unless an
anonymous role is set, and each RPC names the least role it needs.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from modelhub.common.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
)


class Role(enum.IntEnum):
    """Roles in increasing power: each includes everything the ones below may do."""

    READER = 1  # reads and inference
    PUBLISHER = 2  # + publish models, versions, aliases, monitor rules
    ADMIN = 3  # + deployments, endpoints, deletes, load/unload

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise InvalidArgumentError(f"unknown role {text!r}; expected one of {names}") from None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling."""

    name: str
    role: Role
    # True when no credentials were presented.
    anonymous: bool = False


ANONYMOUS_ADMIN = Principal("anonymous", Role.ADMIN, anonymous=True)


def parse_tokens(spec: str) -> dict[str, Principal]:
    """Parse `token:role[:name],token:role[:name],…` (whitespace and newlines allowed).

    >>> parse_tokens("s3cret:admin:ops, r34d:reader")["r34d"].role.name
    'READER'
    """
    tokens: dict[str, Principal] = {}
    for raw in spec.replace("\n", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise InvalidArgumentError(
                f"bad token entry {entry!r}: expected token:role or token:role:name"
            )
        token, role = parts[0], Role.parse(parts[1])
        name = parts[2] if len(parts) == 3 and parts[2] else f"{role.name.lower()}-{len(tokens)}"
        tokens[token] = Principal(name, role)
    return tokens


class Authenticator:
    """Checks bearer tokens and roles. Transport-neutral: callers pass the header value."""

    def __init__(self, tokens: Mapping[str, Principal], anonymous_role: Role | None = None):
        self._tokens = dict(tokens)
        self._anonymous = (
            Principal("anonymous", anonymous_role, anonymous=True) if anonymous_role else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an `authorization` header value (None when absent)."""
        if not self._tokens:
            return ANONYMOUS_ADMIN
        if not authorization:
            if self._anonymous is not None:
                return self._anonymous
            raise UnauthenticatedError(
                "missing credentials: send the header 'authorization: Bearer <token>'",
                reason="MISSING_TOKEN",
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError(
                "malformed authorization header: expected 'Bearer <token>'",
                reason="MALFORMED_TOKEN",
            )
        token = token.strip()
        for known, principal in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return principal
        raise UnauthenticatedError("invalid bearer token", reason="INVALID_TOKEN")

    @staticmethod
    def authorize(principal: Principal, required: Role, operation: str) -> None:
        if principal.role >= required:
            return
        if principal.anonymous:
            # Credentials would help: that is "unauthenticated" (HTTP 401), not "forbidden".
            raise UnauthenticatedError(
                f"{operation} needs credentials with role {required.name.lower()}: send the "
                "header 'authorization: Bearer <token>'",
                reason="MISSING_TOKEN",
                metadata={"required_role": required.name.lower()},
            )
        if principal.role < required:
            raise PermissionDeniedError(
                f"{operation} needs role {required.name.lower()}; "
                f"{principal.name} has role {principal.role.name.lower()}",
                metadata={"required_role": required.name.lower()},
            )
