"""The `modelhub score` arguments that are checked before the registry is called."""

from __future__ import annotations

import pytest

from modelhub.cli.main import build_parser, main
from modelhub.cli.score import local_workers, parse_columns
from modelhub.common.errors import InvalidArgumentError


def test_columns_map_inputs_to_one_or_several_columns() -> None:
    assert parse_columns(["x=a, b,c", "ids=txn"]) == {"x": ("a", "b", "c"), "ids": ("txn",)}
    for bad in (["x"], ["=a"], ["x="], ["x=a", "x=b"]):
        with pytest.raises(InvalidArgumentError):
            parse_columns(bad)


def test_local_schedulers() -> None:
    assert local_workers(None) is None
    assert local_workers("tcp://10.0.0.1:8786") is None
    assert local_workers("local") == 0
    assert local_workers("local:3") == 3
    for bad in ("local:0", "local:two"):
        with pytest.raises(InvalidArgumentError, match="expected local or local:N"):
            local_workers(bad)


def test_the_score_command_parses_its_options() -> None:
    command = "score fraud@champion -i in.csv -o out.parquet --columns x=a,b --batch-size 64"
    args = build_parser().parse_args([*command.split(), "--scheduler", "local:2", "--keep-parts"])
    assert (args.group, args.reference, args.input, args.output) == (
        "score", "fraud@champion", "in.csv", "out.parquet"
    )  # fmt: skip
    assert (args.columns, args.batch_size, args.scheduler, args.keep_parts) == (
        ["x=a,b"], 64, "local:2", True
    )  # fmt: skip


def test_bad_arguments_fail_before_the_registry_is_called(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 9 on loopback: nothing listens; these must fail before any call.
    base = ["--registry", "127.0.0.1:9", "score", "fraud:2", "-i", "in.parquet", "-o", "o.parquet"]
    assert main([*base, "--columns", "x"]) == 1
    assert (
        "error: INVALID_ARGUMENT: --columns 'x': expected INPUT=COLUMN" in capsys.readouterr().err
    )
    assert main([*base, "--scheduler", "local:zero"]) == 1
    assert "expected local or local:N" in capsys.readouterr().err
