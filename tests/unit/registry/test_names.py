from __future__ import annotations

from collections.abc import Callable

import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.paging import decode_token, encode_token, page_size
from modelhub.registry.names import (
    VersionRef,
    check_id,
    check_labels,
    check_sha256,
    check_tags,
    parse_alias_name,
    parse_reference,
    parse_version_name,
)


@pytest.mark.parametrize("good", ["a", "fraud", "fraud-v2", "a1", "x" * 63])
def test_valid_ids(good: str) -> None:
    assert check_id(good, "model id", "model_id") == good


@pytest.mark.parametrize(
    "bad",
    ["", "../x", "Fraud", "1abc", "-a", "a-", "a_b", "x" * 64, "módèl", "a b", "a/b", "fraud\n"],
)
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_id(bad, "model id", "model_id")
    assert info.value.violations[0].field == "model_id"


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("fraud@champion", VersionRef("fraud", alias="champion")),
        ("fraud/versions/3", VersionRef("fraud", version=3)),
        ("fraud:3", VersionRef("fraud", version=3)),
        ("fraud@latest", VersionRef("fraud", alias="latest")),
        ("fraud", VersionRef("fraud", alias="latest")),
        ("models/fraud/versions/12", VersionRef("fraud", version=12)),
        ("models/fraud@challenger", VersionRef("fraud", alias="challenger")),
    ],
)
def test_references(text: str, ref: VersionRef) -> None:
    assert parse_reference(text) == ref


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "fraud:0",
        "fraud:x",
        "fraud/versions/-1",
        "Fraud@x",
        "fraud@",
        "models/",
        # Digits to str.isdigit() that int() refuses (found by tests/fuzz: INTERNAL before).
        "fraud:²",
        "models/fraud/versions/١٢",
        "fraud:" + "9" * 5000,
    ],
)
def test_bad_references(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_reference(bad)


def test_version_and_alias_names() -> None:
    assert parse_version_name("models/m/versions/2") == VersionRef("m", version=2)
    with pytest.raises(InvalidArgumentError, match="expected"):
        parse_version_name("models/m")
    assert parse_alias_name("models/m/aliases/champion") == ("m", "champion")
    with pytest.raises(InvalidArgumentError):
        parse_alias_name("models/m/champion")


def test_page_tokens_are_bound_to_filters() -> None:
    token = encode_token("m-3", {"tag": "a"})
    assert decode_token(token, {"tag": "a"}) == "m-3"
    assert decode_token("", {"tag": "a"}) is None
    with pytest.raises(InvalidArgumentError, match="other filters"):
        decode_token(token, {"tag": "b"})
    with pytest.raises(InvalidArgumentError, match="not valid"):
        decode_token("!!!", {})
    assert page_size(0) == 50
    assert page_size(5000) == 1000
    with pytest.raises(InvalidArgumentError):
        page_size(-1)


@pytest.mark.parametrize(
    "check",
    [
        lambda: check_tags(["v1\n"]),
        lambda: check_labels({"team\n": "x"}),
        lambda: check_sha256("0" * 64 + "\n"),
    ],
)
def test_a_trailing_newline_makes_a_name_invalid(check: Callable[[], object]) -> None:
    # Patterns are matched in full: `$` alone also matches before a trailing newline.
    with pytest.raises(InvalidArgumentError):
        check()
