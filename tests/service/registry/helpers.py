"""Helpers for registry service tests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]


async def upload_requests(
    metadata: pb.UploadMetadata, data: bytes, chunk: int = 64 * 1024
) -> AsyncIterator[pb.UploadModelVersionRequest]:
    yield pb.UploadModelVersionRequest(metadata=metadata)
    for offset in range(0, len(data), chunk):
        yield pb.UploadModelVersionRequest(chunk=data[offset : offset + chunk])


async def upload(
    stub: registry_pb2_grpc.RegistryServiceStub,
    model: str,
    data: bytes,
    *,
    create_model: bool = True,
    declare_digest: bool = True,
    **fields: object,
) -> pb.ModelVersion:
    metadata = pb.UploadMetadata(
        parent=f"models/{model}",
        create_model=create_model,
        sha256=hashlib.sha256(data).hexdigest() if declare_digest else "",
        **fields,  # type: ignore[arg-type]
    )
    return await stub.UploadModelVersion(upload_requests(metadata, data))


async def download(
    stub: registry_pb2_grpc.RegistryServiceStub, name: str
) -> tuple[pb.ModelVersion, bytes]:
    header: pb.ModelVersion | None = None
    parts: list[bytes] = []
    async for message in stub.DownloadModelVersion(pb.DownloadModelVersionRequest(name=name)):
        if message.HasField("version"):
            header = message.version
        else:
            parts.append(message.chunk)
    assert header is not None
    return header, b"".join(parts)


async def start_registry(
    database_url: str, tmp_path: Path, blob_dir: Path | None = None, log_name: str = "registry"
) -> tuple[subprocess.Popen[bytes], str]:
    """A registry process on an ephemeral port; returns it and its address once ready."""
    ready = tmp_path / f"{log_name}.ready.json"
    ready.unlink(missing_ok=True)
    env = {
        **os.environ,
        "MODELHUB_REGISTRY_PORT": "0",
        "MODELHUB_REGISTRY_METRICS_PORT": "-1",
        "MODELHUB_REGISTRY_DATABASE_URL": database_url,
        "MODELHUB_REGISTRY_BLOB_DIR": str(blob_dir or tmp_path / "blobs"),
        "MODELHUB_REGISTRY_READY_FILE": str(ready),
        "MODELHUB_LOG_FORMAT": "text",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "modelhub.registry"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"{log_name}.log", "ab"),  # noqa: SIM115
    )
    for _ in range(300):
        if ready.exists():
            port = json.loads(ready.read_text())["port"]
            return process, f"127.0.0.1:{port}"
        if process.poll() is not None:
            raise AssertionError((tmp_path / f"{log_name}.log").read_text())
        await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("registry did not start")
