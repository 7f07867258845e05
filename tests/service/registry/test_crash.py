"""A registry killed with SIGKILL mid-upload leaves no version and no blob once restarted;
every earlier version still downloads with a matching sha256."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.onnx_models import add_constant
from tests.service.registry.helpers import ROOT, download, start_registry, upload

Stub = registry_pb2_grpc.RegistryServiceStub


async def test_sigkill_mid_upload_then_restart(database_url: str, tmp_path: Path) -> None:
    blob_dir = tmp_path / "blobs"
    process, address = await start_registry(database_url, tmp_path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = Stub(channel)
            kept = [await upload(stub, "fraud", add_constant(v)) for v in (1.0, 2.0)]
            data = add_constant(3.0, features=256)
            gate = asyncio.Event()

            async def interrupted():
                yield pb.UploadModelVersionRequest(
                    metadata=pb.UploadMetadata(parent="models/fraud")
                )
                yield pb.UploadModelVersionRequest(chunk=data[:500])
                await gate.wait()
                yield pb.UploadModelVersionRequest(chunk=data[500:])

            call = stub.UploadModelVersion(interrupted())
            for _ in range(100):
                if any((blob_dir / "tmp").iterdir()):
                    break
                await asyncio.sleep(0.05)
            assert any((blob_dir / "tmp").iterdir()), "the upload never reached the server"
            # Also leave the debris of a crash between blob rename and commit.
            orphan = hashlib.sha256(b"orphan").hexdigest()
            (blob_dir / "sha256" / orphan[:2]).mkdir(parents=True, exist_ok=True)
            (blob_dir / "sha256" / orphan[:2] / orphan).write_bytes(b"orphan")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            call.cancel()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    process, address = await start_registry(database_url, tmp_path)
    try:
        assert list((blob_dir / "tmp").iterdir()) == []
        blobs = sorted(p.name for p in (blob_dir / "sha256").rglob("*") if p.is_file())
        assert blobs == sorted(v.artifact.sha256 for v in kept)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = Stub(channel)
            listed = await stub.ListModelVersions(
                pb.ListModelVersionsRequest(parent="models/fraud")
            )
            assert [v.version for v in listed.versions] == [2, 1]
            for version in kept:
                header, body = await download(stub, version.name)
                assert hashlib.sha256(body).hexdigest() == version.artifact.sha256
                assert header.artifact.sha256 == version.artifact.sha256
            again = await upload(stub, "fraud", add_constant(4.0))
            assert again.version == 3
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


async def test_refuses_to_start_on_an_old_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    env = {
        **os.environ,
        "MODELHUB_REGISTRY_PORT": "0",
        "MODELHUB_REGISTRY_METRICS_PORT": "-1",
        "MODELHUB_REGISTRY_DATABASE_URL": url,
        "MODELHUB_REGISTRY_BLOB_DIR": str(tmp_path / "blobs"),
        "MODELHUB_LOG_FORMAT": "text",
    }
    result = subprocess.run(
        [sys.executable, "-m", "modelhub.registry"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "make migrate" in result.stderr
    assert "has no registry schema" in result.stderr
