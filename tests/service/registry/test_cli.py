"""The `modelhub` command line against a real registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modelhub.registry.main import RegistryApp
from tests.cli import run_cli
from tests.onnx_models import add_constant


async def _cli(address: str, *args: str) -> tuple[int, str, str]:
    return await run_cli("--registry", address, *args)


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

    code, out, err = await _cli(registry.address, "versions", "get", "fraud@champion")
    assert code == 0, err
    assert json.loads(out)["version"] == "2"

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
    code, out, err = await _cli(registry.address, "endpoints", "apply", "fraud", str(spec))
    assert code == 0, err
    created = json.loads(out)
    # Applying again updates in place and keeps the generated salt.
    code, out, err = await _cli(registry.address, "endpoints", "apply", "fraud", str(spec))
    assert code == 0, err
    assert json.loads(out)["salt"] == created["salt"]
    code, out, err = await _cli(registry.address, "endpoints", "list")
    assert "champion=90→fraud:2" in out
    assert "challenger=10→fraud:1" in out

    code, out, err = await _cli(registry.address, "versions", "get", "nobody@champion")
    assert code == 1
    assert "NOT_FOUND" in err
