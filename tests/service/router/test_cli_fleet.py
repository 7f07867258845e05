"""`modelhub fleet` and `modelhub deployments apply --wait` against a real registry, real
inference replicas and a real router (RouterService.ListReplicas)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.devstack.stack import free_port
from modelhub.inference.main import InferenceApp
from modelhub.inference.settings import InferenceSettings
from modelhub.router.main import RouterApp
from tests.cli import run_cli
from tests.service.router.helpers import start_router, wait_for

pytestmark = [pytest.mark.timeout(120)]


def _loaded(app: InferenceApp, model: str) -> set[int]:
    return {e.version for e in app.service.index() if e.model == model and e.state.name == "READY"}


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


async def _start_inference_at(registry_address: str, tmp_path: Path, port: int) -> InferenceApp:
    app = InferenceApp(
        InferenceSettings(
            host="127.0.0.1",
            port=port,
            metrics_port=-1,
            registry_address=registry_address,
            cache_dir=str(tmp_path / "late-cache"),
            grace_period_s=0.5,
            warmup=False,
        )
    )
    await app.start()
    return app


async def test_apply_waits_until_every_replica_has_the_versions_loaded(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    registry_address: str,
    inference: InferenceApp,
    tmp_path: Path,
) -> None:
    # The second replica of the pool starts only while `apply --wait` is waiting for it.
    late = f"127.0.0.1:{free_port()}"
    router: RouterApp = await start_router(
        registry_address, [inference.address, late], tmp_path / "xds", replica_timeout_s=1.0
    )
    common = ["--registry", registry_address, "--router", router.address]
    second: InferenceApp | None = None
    try:
        code, out, err = await run_cli("fleet", *common)
        assert code == 0, err
        header, *rows = _rows(out)
        assert header == ["REPLICA", "HEALTH", "MODEL", "VERSION", "STATE", "DEVICE", "MEMORY"]
        assert [r[:2] for r in rows] == [[inference.address, "SERVING"], [late, "UNREACHABLE"]]

        spec = tmp_path / "deployment.json"
        spec.write_text(
            "// versions 2 and 3 of m on every replica\n"
            + json.dumps({"model": "models/m", "versions": [{"version": 2}, {"version": 3}]})
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelhub.cli", "deployments", "apply", "m-two", str(spec),
            "--wait", "--timeout", "90", *common,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None and process.stdout is not None
        notes = []
        while not any(f"{late} UNREACHABLE" in line for line in notes):
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            assert line, f"the command ended: {notes}"
            notes.append(line.decode())
        assert "waiting up to 90 s for every replica: m:2, m:3" in notes[0]
        assert process.returncode is None  # still waiting for the late replica

        second = await _start_inference_at(registry_address, tmp_path, int(late.rsplit(":")[1]))
        out_bytes, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        # It returned once both replicas held both versions.
        for app in (inference, second):
            assert {2, 3} <= _loaded(app, "m"), app.address
        assert "rolled out: m:2, m:3 loaded on 2 replica(s)" in out_bytes.decode()

        code, out, err = await run_cli("fleet", "--model", "m", "--version", "3", *common)
        assert code == 0, err
        rows = _rows(out)[1:]
        assert [r[0] for r in rows] == [inference.address, late]
        for row in rows:
            assert row[1:6] == ["SERVING", "m", "3", "READY", "cpu"]
            # At least the artifact's size (a tiny model can hold a few hundred bytes).
            assert float(row[-2]) > 0 and row[-1] in ("B", "KiB", "MiB")
        code, out, err = await run_cli("--json", "fleet", "--model", "m", *common)
        assert code == 0, err
        replicas = json.loads(out)["replicas"]
        assert {(e["name"], e["version"]) for r in replicas for e in r["models"]} >= {
            ("m", "2"),
            ("m", "3"),
        }
        assert all(isinstance(r["memory_used_bytes"], int) for r in replicas)

        # --quiet: no notes on stderr; already rolled out: back at once.
        code, out, err = await run_cli(
            "deployments", "apply", "m-two", str(spec), "--wait", "-q", *common
        )
        assert (code, err) == (0, "")
    finally:
        await router.stop(0)
        if second is not None:
            await second.stop(0)


async def test_wait_gives_up_naming_what_is_missing(
    registry_api: registry_pb2_grpc.RegistryServiceStub,
    registry_address: str,
    inference: InferenceApp,
    tmp_path: Path,
) -> None:
    gone = f"127.0.0.1:{free_port()}"  # nothing listens there
    router = await start_router(
        registry_address, [inference.address, gone], tmp_path / "xds", replica_timeout_s=1.0
    )
    common = ["--registry", registry_address, "--router", router.address]
    try:
        spec = tmp_path / "deployment.json"
        spec.write_text(json.dumps({"model": "models/m", "versions": [{"version": 1}]}))
        code, _, err = await run_cli(
            "deployments", "apply", "m-one", str(spec), "--wait", "--timeout", "3", *common
        )
        assert code == 1
        assert "error: DEADLINE_EXCEEDED: deployments/m-one is not rolled out after 3 s" in err
        assert f"{gone} UNREACHABLE" in err
        await wait_for(lambda: 1 in _loaded(inference, "m"), 30)  # the live replica loads it

        code, out, err = await run_cli("fleet", *common)
        assert code == 0, err
        by_address = {r[0]: r for r in _rows(out)[1:]}
        assert by_address[gone][1] == "UNREACHABLE"
    finally:
        await router.stop(0)


async def test_a_router_without_list_replicas_is_named(registry_address: str) -> None:
    """A server that does not implement RouterService.ListReplicas (here: the registry,
    standing in for an older router) answers UNIMPLEMENTED: the CLI says what to do."""
    code, _, err = await run_cli("fleet", "--router", registry_address)
    assert code == 1
    assert err.strip() == (
        f"error: UNIMPLEMENTED: the router at {registry_address} does not list inference "
        "replicas (RouterService.ListReplicas): upgrade the router"
    )
