"""Two registry replicas on one PostgreSQL database and one shared blob folder (the setup
`deploy/k8s/storage.yaml` describes): a replica that starts (and cleans crash debris) or
deletes versions never removes what the other is uploading or has just committed."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from tests.onnx_models import add_constant
from tests.service.registry.helpers import download, start_registry, upload

Stub = registry_pb2_grpc.RegistryServiceStub

pytestmark = pytest.mark.xdist_group("registry-replicas")


async def _slow_upload(stub: Stub, model: str, data: bytes, pause: float) -> pb.ModelVersion:
    """An upload whose bytes arrive in three parts with pauses: its temp file lives long
    enough for the other replica's start-up cleanup to see it."""
    third = len(data) // 3 + 1

    async def requests() -> AsyncIterator[pb.UploadModelVersionRequest]:
        yield pb.UploadModelVersionRequest(
            metadata=pb.UploadMetadata(
                parent=f"models/{model}",
                create_model=True,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        for offset in range(0, len(data), third):
            yield pb.UploadModelVersionRequest(chunk=data[offset : offset + third])
            await asyncio.sleep(pause)

    return await stub.UploadModelVersion(requests(), timeout=60)


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_restarts_and_deletes_on_one_replica_lose_nothing_of_the_other(
    database_url: str, tmp_path: Path
) -> None:
    blobs = tmp_path / "shared-blobs"
    a, a_address = await start_registry(database_url, tmp_path, blobs, "a")
    stop = asyncio.Event()
    acknowledged: list[pb.ModelVersion] = []
    failures: list[str] = []
    values = itertools.count(1)
    shared = add_constant(0.5, features=64)

    async def uploader(stub: Stub, worker: int) -> None:
        while not stop.is_set():
            data = add_constant(float(next(values)), features=64)
            try:
                acknowledged.append(await _slow_upload(stub, f"up-{worker}", data, 0.05))
            except grpc.aio.AioRpcError as exc:
                failures.append(f"upload {worker}: {exc.code().name} {exc.details()}")

    async def churn(stub: Stub, model: str) -> None:
        """Upload the shared content and delete it again: its blob is unreferenced at
        moments while the other replica commits the same content."""
        while not stop.is_set():
            try:
                version = await upload(stub, model, shared)
                await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name=version.name))
            except grpc.aio.AioRpcError as exc:
                # The replica being stopped (b): refused, or a call in flight cancelled by its
                # shutdown (SIGTERM stops the server with a grace period).
                stopping = model == "shared-b" and exc.code() == grpc.StatusCode.CANCELLED
                if exc.code() != grpc.StatusCode.UNAVAILABLE and not stopping:
                    failures.append(f"churn {model}: {exc.code().name} {exc.details()}")
                return

    try:
        async with grpc.aio.insecure_channel(a_address) as channel:
            stub = Stub(channel)
            tasks = [asyncio.create_task(uploader(stub, w)) for w in range(4)]
            tasks.append(asyncio.create_task(churn(stub, "shared-a")))
            for restart in range(6):
                b, b_address = await start_registry(database_url, tmp_path, blobs, "b")
                async with grpc.aio.insecure_channel(b_address) as b_channel:
                    b_churn = asyncio.create_task(churn(Stub(b_channel), "shared-b"))
                    await asyncio.sleep(0.6)
                    sig = signal.SIGKILL if restart % 2 else signal.SIGTERM
                    await asyncio.to_thread(_stop, b, sig)
                    await b_churn
            stop.set()
            await asyncio.gather(*tasks)

            assert failures == []
            assert len(acknowledged) >= 8
            missing = []
            for model in [f"up-{w}" for w in range(4)] + ["shared-a", "shared-b"]:
                listed = await stub.ListModelVersions(
                    pb.ListModelVersionsRequest(parent=f"models/{model}", page_size=1000)
                )
                for version in listed.versions:
                    if version.status != pb.ModelVersion.Status.READY:
                        continue
                    try:
                        _, body = await download(stub, version.name)
                    except grpc.aio.AioRpcError as exc:
                        missing.append(f"{version.name}: {exc.code().name} {exc.details()}")
                        continue
                    assert hashlib.sha256(body).hexdigest() == version.artifact.sha256
            assert missing == []
            listed_names = set()
            for w in range(4):
                listed = await stub.ListModelVersions(
                    pb.ListModelVersionsRequest(parent=f"models/up-{w}", page_size=1000)
                )
                listed_names |= {v.name for v in listed.versions}
            assert {v.name for v in acknowledged} <= listed_names
    finally:
        stop.set()
        await asyncio.to_thread(_stop, a, signal.SIGTERM)
