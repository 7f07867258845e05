from __future__ import annotations

import pytest

from modelhub.common.auth import Authenticator, Role, parse_tokens
from modelhub.common.errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
)


def test_parse_tokens() -> None:
    tokens = parse_tokens(" adm1n:admin:ops ,\n pub:publisher, r:reader ")
    assert tokens["adm1n"].name == "ops"
    assert tokens["adm1n"].role is Role.ADMIN
    assert tokens["pub"].role is Role.PUBLISHER
    assert tokens["r"].role is Role.READER


@pytest.mark.parametrize("spec", ["justatoken", ":admin", "t:superuser", "a:b:c:d"])
def test_parse_tokens_rejects_bad_entries(spec: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_tokens(spec)


def test_disabled_auth_lets_everyone_in_as_admin() -> None:
    auth = Authenticator({})
    assert not auth.enabled
    assert auth.authenticate(None).role is Role.ADMIN


def test_enabled_auth() -> None:
    auth = Authenticator(parse_tokens("r:reader,a:admin"))
    with pytest.raises(UnauthenticatedError, match="missing credentials"):
        auth.authenticate(None)
    with pytest.raises(UnauthenticatedError, match="malformed"):
        auth.authenticate("Basic abc")
    with pytest.raises(UnauthenticatedError, match="invalid bearer token"):
        auth.authenticate("Bearer nope")
    reader = auth.authenticate("Bearer r")
    Authenticator.authorize(reader, Role.READER, "GetModel")
    with pytest.raises(PermissionDeniedError, match="needs role admin"):
        Authenticator.authorize(reader, Role.ADMIN, "DeleteModel")
    Authenticator.authorize(auth.authenticate("bearer a"), Role.ADMIN, "DeleteModel")


def test_anonymous_role() -> None:
    auth = Authenticator(parse_tokens("a:admin"), anonymous_role=Role.READER)
    anonymous = auth.authenticate(None)
    assert anonymous.role is Role.READER
    Authenticator.authorize(anonymous, Role.READER, "GetModel")
    # Without a token a write is "unauthenticated" (a token would help), not "forbidden".
    with pytest.raises(UnauthenticatedError, match="needs credentials with role publisher"):
        Authenticator.authorize(anonymous, Role.PUBLISHER, "CreateModel")
    with pytest.raises(UnauthenticatedError):
        auth.authenticate("Bearer wrong")
