"""The `modelhub` command line without servers: its arguments and help, its JSON, the
resource files it reads (example and schema), the rollout and fleet logic, closed pipes
and a missing inference package."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from google.protobuf import json_format

from modelhub.api.common.v1 import types_pb2
from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.monitor.v1 import monitor_pb2 as mpb
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.router.v1 import router_pb2 as rpb
from modelhub.cli import specs
from modelhub.cli.fleet import fleet_rows, rollout_gaps
from modelhub.cli.main import build_parser, main
from modelhub.cli.output import SAFE_INTEGER, message_dict
from modelhub.cli.resources import change_text, name_matches, watch_line
from modelhub.common.version import __version__


def _parsers(parser: argparse.ArgumentParser, path: str = "modelhub"):
    """Every (command path, parser) under `parser`."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_and_argument_is_explained() -> None:
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 40
    for path, parser in parsers:
        assert parser.description, f"{path}: no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest}: no help"
                continue
            assert action.help and action.help != argparse.SUPPRESS, (
                f"{path} {action.option_strings or action.dest}: no help"
            )
        # A group shows examples, and so does each command one of them runs.
        words = path.split()
        if len(words) == 2 and any(
            isinstance(a, argparse._SubParsersAction) for a in parser._actions
        ):
            assert parser.epilog and f"{path} " in parser.epilog, f"{path}: no examples"
    shown = {path for path, p in parsers if p.epilog and "examples:" in p.epilog}
    for path in ("modelhub deployments apply", "modelhub endpoints example", "modelhub watch"):
        assert path in shown


def test_help_of_a_command_describes_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["deployments", "apply", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "every inference replica" in text
    assert "--timeout S" in text and "give up after S seconds" in text
    assert "examples:\n  modelhub deployments apply fraud deployment.json --wait" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "models", "list"],
        ["models", "--json", "list"],
        ["models", "list", "--json"],
        ["stats", "fraud", "--json", "--version", "2"],
        ["--quiet", "versions", "get", "fraud:1", "--json"],
    ],
)
def test_json_and_the_common_options_anywhere(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--registry", "10.0.0.1:1", "--token", "t"])
    assert args.json is True
    assert (args.registry, args.token) == ("10.0.0.1:1", "t")
    args = build_parser().parse_args(["--registry", "10.0.0.2:2", *argv])
    assert args.registry == "10.0.0.2:2" and args.json is True


def test_defaults_stay_when_the_options_are_not_given() -> None:
    args = build_parser().parse_args(["models", "list"])
    assert args.json is False and args.quiet is False and args.registry


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"modelhub {__version__}"
    assert __version__ != "0+unknown"  # installed: the distribution's version


# ------------------------------------------------------------------------------- JSON


def test_int64_fields_are_numbers_where_json_keeps_them_exact() -> None:
    version = pb.ModelVersion(
        name="models/fraud/versions/7",
        version=7,
        artifact=pb.Artifact(sha256="ab" * 32, size_bytes=SAFE_INTEGER + 1),
        schema=pb.ModelSchema(
            inputs=[types_pb2.TensorSpec(name="x", datatype="FP32", shape=[-1, 8])], ir_version=9
        ),
    )
    data = message_dict(version)
    assert data["version"] == 7
    assert data["schema"]["inputs"][0]["shape"] == [-1, 8]  # repeated, nested
    assert data["schema"]["ir_version"] == 9
    assert data["artifact"]["size_bytes"] == str(SAFE_INTEGER + 1)  # beyond 2**53: a string
    stats = mpb.Stats(requests=12, status_codes={"OK": 10, "UNAVAILABLE": 2}, window_seconds=300)
    data = message_dict(stats)
    assert data["requests"] == 12 and data["window_seconds"] == 300
    assert data["status_codes"] == {"OK": 10, "UNAVAILABLE": 2}  # map values
    # Both forms read back.
    assert json_format.ParseDict(message_dict(version), pb.ModelVersion()) == version
    assert json_format.ParseDict(message_dict(stats), mpb.Stats()) == stats


# ------------------------------------------------------------------------- resource files


def test_comments_are_stripped_outside_strings_only() -> None:
    text = '{\n  // a comment\n  "a": "http://x//y", /* block\n */ "b": "/* kept */"\n}'
    stripped = specs.strip_comments(text)
    assert json.loads(stripped) == {"a": "http://x//y", "b": "/* kept */"}
    assert stripped.count("\n") == text.count("\n")  # error positions stay right
    assert json.loads(specs.strip_comments('{"q": "say \\"//\\" twice"}')) == {
        "q": 'say "//" twice'
    }


@pytest.mark.parametrize("kind_name", sorted(specs.KINDS))
def test_the_example_reads_back_and_fits_the_schema(kind_name: str, tmp_path: Path) -> None:
    kind = specs.KINDS[kind_name]
    text = specs.example(kind)
    assert text.startswith("// An example")
    assert text.count("//") > 10  # annotated
    path = tmp_path / "spec.json"
    path.write_text(text)
    assert specs.read_message(str(path), kind.message()) == kind.example
    schema = specs.schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(json.loads(specs.strip_comments(text)))
    validator.validate(json.loads(specs.example(kind, annotated=False)))
    # Every field of the message is described, in both spellings.
    for field in kind.message.DESCRIPTOR.fields:
        assert field.name in schema["properties"] and field.json_name in schema["properties"]


def test_the_schema_refuses_what_apply_refuses(tmp_path: Path) -> None:
    kind = specs.KINDS["endpoint"]
    validator = jsonschema.Draft202012Validator(specs.schema(kind))
    good = json.loads(specs.example(kind, annotated=False))
    both = {"version": 2, "alias": "champion"}
    bad_files = {
        "typo": {**good, "varaints": good["variants"]},
        "type": {**good, "fallback": 3},
        "oneof": {**good, "variants": [{**good["variants"][0], "selector": both}]},
        "enum": {**good, "sticky_key": {"source": "COOKIE", "name": "x"}},
    }
    for name, data in bad_files.items():
        assert list(validator.iter_errors(data)), f"the schema accepts {name}"
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=f"{path} is not a valid Endpoint file"):
            specs.read_message(str(path), pb.Endpoint())
    # Required by the registry, documented "Required." in the proto: required here.
    assert set(specs.schema(kind)["required"]) == {"variants"}
    variant = specs.schema(kind)["$defs"]["modelhub.registry.v1.Variant"]
    assert set(variant["required"]) == {"name", "model", "weight"}
    # Output-only fields are accepted (a file saved with `get --json` applies again).
    assert specs.schema(kind)["properties"]["etag"]["readOnly"] is True
    validator.validate({**good, "name": "endpoints/fraud", "etag": "abc"})


def test_example_and_schema_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["endpoints", "example"]) == 0
    text = capsys.readouterr().out
    assert "// Required. At least one." in text and '"variants": [' in text
    assert main(["deployments", "example", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "models/fraud"
    assert main(["deployments", "example", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "ModelHub deployment file (modelhub.registry.v1.Deployment)"
    assert "AUTO" in schema["properties"]["device"]["enum"]


# -------------------------------------------------------------------- rollout and fleet


def _replica(
    address: str, *entries: tuple[str, str, int], health: int = rpb.SERVING
) -> rpb.Replica:
    return rpb.Replica(
        address=address,
        health=health,  # type: ignore[arg-type]
        devices=["cpu"],
        memory_used_bytes=3 << 20,
        memory_budget_bytes=8 << 30,
        models=[
            ipb.ModelIndexEntry(
                name=name,
                version=version,
                state=state,  # type: ignore[arg-type]
                execution_provider="CPUExecutionProvider",
                device="cpu" if state == ipb.READY else "",
                memory_bytes=1 << 20,
                reason="no GPU" if state == ipb.FAILED else "",
            )
            for name, version, state in entries
        ],
    )


def test_a_rollout_is_done_when_every_replica_has_every_version_ready() -> None:
    a = _replica("a:1", ("fraud", "2", ipb.READY), ("fraud", "3", ipb.READY))
    b = _replica("b:1", ("fraud", "2", ipb.READY), ("fraud", "3", ipb.LOADING))
    assert rollout_gaps([a], "fraud", [2, 3]) == []
    assert rollout_gaps([a, b], "fraud", [2, 3]) == ["b:1: fraud:3 LOADING"]
    assert rollout_gaps([a], "fraud", [4]) == ["a:1: fraud:4 not known"]
    c = _replica("c:1", ("fraud", "2", ipb.FAILED))
    assert rollout_gaps([c], "fraud", [2]) == ["c:1: fraud:2 FAILED (no GPU)"]
    down = rpb.Replica(address="d:1", health=rpb.UNREACHABLE, reason="connection refused")
    assert rollout_gaps([a, down], "fraud", [2]) == ["d:1 UNREACHABLE (connection refused)"]
    assert rollout_gaps([], "fraud", [2]) == ["the router lists no inference replica"]
    # Another model's entries do not count.
    assert rollout_gaps([_replica("e:1", ("other", "2", ipb.READY))], "fraud", [2]) == [
        "e:1: fraud:2 not known"
    ]


def test_fleet_rows() -> None:
    a = _replica("a:1", ("fraud", "2", ipb.READY), ("other", "1", ipb.FAILED))
    empty = _replica("b:1")
    down = rpb.Replica(address="d:1", health=rpb.UNREACHABLE, reason="deadline exceeded")
    rows = fleet_rows([a, empty, down])
    assert rows[0] == ("a:1", "SERVING", "fraud", "2", "READY", "cpu", "1.0 MiB")
    assert rows[1][:5] == ("a:1", "SERVING", "other", "1", "FAILED (no GPU)")
    assert rows[2] == ("b:1", "SERVING", "-", "-", "-", "cpu", "3.0 MiB of 8.0 GiB")
    assert rows[3][:5] == ("d:1", "UNREACHABLE", "-", "-", "deadline exceeded")


# ------------------------------------------------------------------------------- watch


def test_watch_name_filter() -> None:
    for name in ("models/fraud", "models/fraud/versions/3", "models/fraud/aliases/x"):
        assert name_matches("fraud", name) and name_matches("models/fraud", name)
    assert name_matches("fraud", "endpoints/fraud") and name_matches("fraud", "deployments/fraud")
    assert not name_matches("models/fraud", "endpoints/fraud")
    assert not name_matches("fraud", "models/fraudster")
    assert name_matches("fraud*", "models/fraudster") and name_matches("", "anything")
    assert not name_matches("models/fraud", "models/fraudster/versions/1")


def test_watch_lines_say_what_changed() -> None:
    stamp = {"seconds": 100}
    version = pb.WatchEvent(
        type=pb.WatchEvent.PUT,
        revision=12,
        kind=pb.MODEL_VERSION,
        name="models/fraud/versions/2",
        version=pb.ModelVersion(
            status=pb.ModelVersion.READY,
            artifact=pb.Artifact(sha256="abcdef0123456789" * 4),
            aliases=["champion"],
            create_time=stamp,
            update_time=stamp,
        ),
    )
    assert change_text(version, synced=False) == "exists READY sha256:abcdef012345 aliases=champion"
    assert change_text(version, synced=True).startswith("created READY")
    version.version.update_time.seconds = 200
    assert change_text(version, synced=True).startswith("updated READY")
    alias = pb.WatchEvent(type=pb.WatchEvent.PUT, alias=pb.Alias(alias="champion", version=3))
    assert change_text(alias, synced=True) == "set → version 3"
    gone = pb.WatchEvent(type=pb.WatchEvent.DELETE, name="endpoints/fraud")
    assert change_text(gone, synced=True) == "deleted"
    line = watch_line("2026-01-01 10:00:00", 12, "version", "models/fraud/versions/2", "created")
    assert line.split() == [
        "2026-01-01",
        "10:00:00",
        "12",
        "version",
        "models/fraud/versions/2",
        "created",
    ]


# ------------------------------------------------------------------- pipes and packages


def test_a_closed_pipe_ends_the_command_quietly_by_sigpipe() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modelhub.cli", "endpoints", "example"],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == -signal.SIGPIPE
    assert done.stderr == b""  # no traceback


def test_head_reads_the_first_line_and_nothing_complains() -> None:
    command = f"'{sys.executable}' -m modelhub.cli deployments example --schema | head -1"
    done = subprocess.run(
        f"set -o pipefail; {command}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == b"{\n" and done.stderr == b""
    assert done.returncode in (0, 128 + signal.SIGPIPE)  # SIGPIPE only if head left first


def test_without_the_inference_package_those_commands_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("modelhub.optimize", "modelhub.optimize.cli", "modelhub.scoring"):
        monkeypatch.setitem(sys.modules, name, None)
    nowhere = ["--registry", "127.0.0.1:9"]  # never called
    commands = [
        ["versions", "optimize", "fraud:1", "--method", "fp16"],
        ["versions", "report", "fraud:1"],
        ["score", "fraud:1", "-i", "in.parquet", "-o", "out.parquet"],
    ]
    for command in commands:
        assert main([*nowhere, *command]) == 2, command
        err = capsys.readouterr().err
        assert "this command needs the modelhub-inference package" in err, err
        assert "Traceback" not in err


def test_the_cli_imports_no_inference_module() -> None:
    code = (
        "import sys; from modelhub.cli.main import build_parser; build_parser(); "
        "loaded = [m for m in sys.modules if m.split('.')[:2] in "
        "(['modelhub', 'inference'], ['modelhub', 'optimize'], ['modelhub', 'scoring'])]; "
        "print(loaded)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
