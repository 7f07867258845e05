"""The `modelhub` command line against a real registry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pty
import signal
import sys
from pathlib import Path

import pytest

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.cli import specs
from modelhub.registry.main import RegistryApp
from tests.cli import run_cli
from tests.onnx_models import add_constant, large_matmul

Stub = registry_pb2_grpc.RegistryServiceStub


async def _cli(address: str, *args: str) -> tuple[int, str, str]:
    return await run_cli("--registry", address, *args)


def _fields(out: str) -> dict[str, str]:
    """`KEY  value` lines of a detail view (up to its first section)."""
    found = {}
    for line in out.split("\n\n")[0].splitlines():
        key, _, value = line.partition("  ")
        found[key.strip()] = value.strip()
    return found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_push_promote_download(registry: RegistryApp, tmp_path: Path) -> None:
    model_file = tmp_path / "fraud.onnx"
    model_file.write_bytes(add_constant(1.0))
    code, out, err = await _cli(
        registry.address, "models", "push", "fraud", str(model_file),
        "--description", "first", "--run-id", "run-7", "--alias", "challenger",
    )  # fmt: skip
    assert code == 0, err
    assert "models/fraud/versions/1" in out
    assert "aliases=challenger" in out

    model_file.write_bytes(add_constant(2.0))
    code, out, err = await _cli(registry.address, "models", "push", "fraud", str(model_file))
    assert code == 0, err
    code, out, err = await _cli(registry.address, "alias", "set", "fraud", "champion", "2")
    assert code == 0, err
    assert "version 2" in out

    code, out, err = await _cli(registry.address, "versions", "list", "fraud")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "STATUS", "ALIASES", "SHA256", "BYTES", "CREATED"]
    assert lines[1].split()[:3] == ["2", "READY", "champion"]
    assert lines[2].split()[:3] == ["1", "READY", "challenger"]

    # A table by default; JSON (int64 as numbers) with --json, before or after the command.
    code, out, err = await _cli(registry.address, "versions", "get", "fraud@champion")
    assert code == 0, err
    shown = _fields(out)
    assert shown["NAME"] == "models/fraud/versions/2"
    assert (shown["STATUS"], shown["ALIASES"]) == ("READY", "champion")
    assert shown["ARTIFACT"].startswith(f"sha256:{hashlib.sha256(add_constant(2.0)).hexdigest()}")
    assert "\nINPUTS:\n  NAME  DATATYPE  SHAPE\n  x     FP32" in out
    for argv in (["--json", "versions", "get", "fraud@champion"],
                 ["versions", "get", "fraud@champion", "--json"]):  # fmt: skip
        code, out, err = await _cli(registry.address, *argv)
        assert code == 0, err
        version = json.loads(out)
        assert version["version"] == 2 and version["artifact"]["size_bytes"] > 0

    target = tmp_path / "out.onnx"
    code, out, err = await _cli(
        registry.address, "versions", "download", "fraud:1", "-o", str(target)
    )
    assert code == 0, err
    assert (
        hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(add_constant(1.0)).digest()
    )

    spec = tmp_path / "endpoint.json"
    spec.write_text(
        json.dumps(
            {
                "sticky_key": {"source": "METADATA", "name": "x-user-id"},
                "variants": [
                    {
                        "name": "champion",
                        "model": "models/fraud",
                        "selector": {"alias": "champion"},
                        "weight": 90,
                    },
                    {
                        "name": "challenger",
                        "model": "models/fraud",
                        "selector": {"alias": "challenger"},
                        "weight": 10,
                    },
                ],
            }
        )
    )
    code, out, err = await _cli(
        registry.address, "endpoints", "apply", "fraud", str(spec), "--json"
    )
    assert code == 0, err
    created = json.loads(out)
    # Applying again updates in place and keeps the generated salt.
    code, out, err = await _cli(
        registry.address, "--json", "endpoints", "apply", "fraud", str(spec)
    )
    assert code == 0, err
    assert json.loads(out)["salt"] == created["salt"]
    code, out, err = await _cli(registry.address, "endpoints", "list")
    assert "champion=90→fraud:2" in out
    assert "challenger=10→fraud:1" in out
    code, out, err = await _cli(registry.address, "endpoints", "get", "fraud")
    assert code == 0, err
    shown = _fields(out)
    assert (shown["STICKY KEY"], shown["SALT"]) == ("metadata:x-user-id", created["salt"])
    variants = out.split("VARIANTS:\n")[1].splitlines()
    assert variants[0].split() == ["NAME", "WEIGHT", "MODEL", "SELECTOR", "VERSION", "POOL"]
    assert variants[1].split() == ["champion", "90", "fraud", "alias", "champion", "2", "default"]

    code, out, err = await _cli(registry.address, "versions", "get", "nobody@champion")
    assert code == 1
    assert "NOT_FOUND" in err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_example_files_apply_as_printed(registry: RegistryApp, tmp_path: Path) -> None:
    """`modelhub endpoints example > endpoint.json` is a file `apply` takes as it is (the
    example names aliases champion and candidate and version 3 of fraud)."""
    for value in (1.0, 2.0, 3.0):
        (tmp_path / "m.onnx").write_bytes(add_constant(value))
        code, _, err = await _cli(
            registry.address, "models", "push", "fraud", str(tmp_path / "m.onnx")
        )
        assert code == 0, err
    for alias, version in (("champion", "1"), ("candidate", "2")):
        code, _, err = await _cli(registry.address, "alias", "set", "fraud", alias, version)
        assert code == 0, err

    code, example, err = await _cli(registry.address, "endpoints", "example")
    assert code == 0, err
    (tmp_path / "endpoint.json").write_text(example)
    code, out, err = await _cli(
        registry.address, "endpoints", "apply", "fraud", str(tmp_path / "endpoint.json")
    )
    assert code == 0, err
    assert _fields(out)["AUDIT"] == "0.01 redact=ssn"
    shadows = out.split("SHADOWS:\n")[1].splitlines()
    assert shadows[1].split() == ["candidate", "0.1", "fraud", "alias", "candidate", "2", "default"]

    code, example, err = await _cli(registry.address, "deployments", "example")
    assert code == 0, err
    # The name may come from the file instead of the command line.
    data = json.loads(specs.strip_comments(example))
    (tmp_path / "deployment.json").write_text(json.dumps({**data, "name": "deployments/fraud"}))
    code, out, err = await _cli(
        registry.address, "deployments", "apply", str(tmp_path / "deployment.json")
    )
    assert code == 0, err
    shown = _fields(out)
    assert shown["NAME"] == "deployments/fraud"
    assert shown["VERSIONS"] == "alias champion → 1, version 3 → 3"
    assert "max_batch_size=64" in shown["BATCHING"]
    code, out, err = await _cli(registry.address, "deployments", "get", "fraud", "--json")
    assert code == 0, err
    assert [v.get("resolved_version") for v in json.loads(out)["versions"]] == [1, 3]
    code, out, err = await _cli(registry.address, "deployments", "list")
    assert out.splitlines()[1].split() == ["fraud", "fraud", "1,3", "1", "AUTO"]

    # A file that is not a deployment is refused with the file named, before any call.
    (tmp_path / "bad.json").write_text('{"model": "models/fraud", "versoins": []}')
    code, _, err = await _cli(
        registry.address, "deployments", "apply", "x", str(tmp_path / "bad.json")
    )
    assert code == 1
    assert "bad.json is not a valid Deployment file" in err and "versoins" in err
    code, _, err = await _cli(registry.address, "deployments", "apply", str(tmp_path / "bad.json"))
    assert code == 1


async def _line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 30)).decode().rstrip("\n")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_watch_is_a_readable_stream_filtered_by_kind_and_name(
    registry: RegistryApp, tmp_path: Path
) -> None:
    model_file = tmp_path / "m.onnx"
    model_file.write_bytes(add_constant(1.0))
    for model in ("fraud", "other"):
        code, _, err = await _cli(
            registry.address, "models", "push", model, str(model_file), "--alias", "champion"
        )
        assert code == 0, err

    async def watch(*extra: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelhub.cli", "--registry", registry.address,
            "watch", "--kind", "alias", "--name", "fraud", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    text, ndjson = await watch(), await watch("--json")
    try:
        assert text.stdout is not None and ndjson.stdout is not None
        assert (await _line(text.stdout)).split() == ["TIME", "REV", "KIND", "NAME", "CHANGE"]
        first = (await _line(text.stdout)).split()
        assert first[3:] == [
            "alias",
            "models/fraud/aliases/champion",
            "exists",
            "→",
            "version",
            "1",
        ]
        assert "in sync: changes follow" in await _line(text.stdout)
        events = [json.loads(await _line(ndjson.stdout)) for _ in range(2)]
        assert events[0]["alias"] == {
            "name": "models/fraud/aliases/champion",
            "alias": "champion",
            "version": 1,
            "update_time": events[0]["alias"]["update_time"],
        }
        assert events[1]["type"] == "SYNCED" and isinstance(events[1]["revision"], int)

        # Changes to other models and other kinds are left out.
        model_file.write_bytes(add_constant(2.0))
        for model in ("other", "fraud"):
            code, _, err = await _cli(registry.address, "models", "push", model, str(model_file))
            assert code == 0, err
            code, _, err = await _cli(registry.address, "alias", "set", model, "champion", "2")
            assert code == 0, err
        line = (await _line(text.stdout)).split()
        assert line[3:] == ["alias", "models/fraud/aliases/champion", "set", "→", "version", "2"]
        assert int(line[2]) > events[1]["revision"]
        event = json.loads(await _line(ndjson.stdout))
        while event["type"] == "PROGRESS":
            event = json.loads(await _line(ndjson.stdout))
        assert (event["type"], event["alias"]["version"]) == ("PUT", 2)
    finally:
        for process in (text, ndjson):
            process.terminate()
            await process.wait()


def _run_on_a_terminal(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal: (status, what it showed)."""
    import subprocess

    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelhub.cli", *argv],
        stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )  # fmt: skip
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    return process.wait(timeout), shown.decode(errors="replace")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_progress_bars_only_on_a_terminal(registry: RegistryApp, tmp_path: Path) -> None:
    big = large_matmul(tmp_path / "big.onnx", 6 << 20)
    argv = ["--registry", registry.address, "models", "push", "big", str(big)]
    code, shown = await asyncio.to_thread(_run_on_a_terminal, argv)
    assert code == 0, shown
    assert "pushing big.onnx" in shown and "MiB" in shown and "━" in shown, shown
    assert "models/big/versions/1" in shown

    target = tmp_path / "copy.onnx"
    argv = ["--registry", registry.address, "versions", "download", "big:1", "-o", str(target)]
    code, shown = await asyncio.to_thread(_run_on_a_terminal, argv)
    assert code == 0, shown
    assert "downloading big:1" in shown and "━" in shown, shown
    assert target.read_bytes() == big.read_bytes()

    # Not a terminal (a pipe), or --quiet: no bar.
    code, out, err = await _cli(
        registry.address, "versions", "download", "big:1", "-o", str(target)
    )
    assert code == 0 and err == "" and "━" not in out
    code, shown = await asyncio.to_thread(_run_on_a_terminal, [*argv, "--quiet"])
    assert code == 0 and "━" not in shown and "downloading" not in shown.split("→")[0], shown


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_closed_pipe_ends_a_listing_quietly(registry: RegistryApp, tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(add_constant(1.0))
    code, _, err = await _cli(registry.address, "models", "push", "fraud", str(tmp_path / "m.onnx"))
    assert code == 0, err
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already gone
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelhub.cli", "--registry", registry.address, "models", "list",
        stdout=write, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    _, err_bytes = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == -signal.SIGPIPE
    assert err_bytes == b""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_models_list_by_label(registry: RegistryApp, registry_stub: Stub) -> None:
    for model, owner in (("a-model", "alice"), ("b-model", "bob"), ("c-model", "alice")):
        await registry_stub.CreateModel(
            rpb.CreateModelRequest(model_id=model, model=rpb.Model(labels={"owner": owner}))
        )
    code, out, err = await _cli(registry.address, "models", "list", "--label", "owner=alice")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == [
        "models/a-model",
        "models/c-model",
    ]

    code, out, err = await _cli(registry.address, "models", "list", "--label", "owner")
    assert code != 0 and out == ""
    assert "label" in err and "key=value" in err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_delete_names_what_it_deleted_given_an_id_or_a_full_name(
    registry: RegistryApp, registry_stub: Stub
) -> None:
    for model in ("by-id", "by-name"):
        await registry_stub.CreateModel(rpb.CreateModelRequest(model_id=model))
    code, out, err = await _cli(registry.address, "models", "delete", "by-id")
    assert code == 0, err
    assert out.strip() == "deleted models/by-id"
    code, out, err = await _cli(registry.address, "--json", "models", "delete", "models/by-name")
    assert code == 0, err
    assert json.loads(out) == {"deleted": "models/by-name"}
    code, out, err = await _cli(registry.address, "models", "list")
    assert code == 0, err
    assert "by-id" not in out and "by-name" not in out
