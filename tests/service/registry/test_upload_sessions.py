"""Upload sessions (StartUpload, AppendUpload, GetUpload, CommitUpload, CancelUpload) over
gRPC, on SQLite and PostgreSQL: chunks in order, the retried last chunk, wrong offsets,
limits, the checks of the streamed upload at commit, expiry, and two replicas sharing the
blob folder. Over HTTP through Envoy: tests/service/registry/test_upload_http.py."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.api import httpbody_pb2

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.registry.main import RegistryApp
from modelhub.registry.uploads import MAX_CHUNK_BYTES
from tests.conftest import registry_settings
from tests.onnx_models import add_constant
from tests.service.registry.helpers import download

Stub = registry_pb2_grpc.RegistryServiceStub

# ~160 KB: a real ONNX model, sent in several chunks.
MODEL = add_constant(2.0, features=40_000)


def reason(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    info = error_info(dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY])
    assert info is not None
    return info.reason, dict(info.metadata)


def chunks(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(offset, data[offset : offset + size]) for offset in range(0, len(data), size)]


async def start(stub: Stub, model: str = "fraud", data: bytes = MODEL, **fields: object) -> str:
    metadata = pb.UploadMetadata(
        parent=f"models/{model}",
        create_model=True,
        sha256=hashlib.sha256(data).hexdigest(),
        **fields,  # type: ignore[arg-type]
    )
    session = await stub.StartUpload(pb.StartUploadRequest(metadata=metadata))
    assert session.received_bytes == 0
    return session.name


async def append(stub: Stub, name: str, offset: int, chunk: bytes) -> pb.UploadSession:
    return await stub.AppendUpload(
        pb.AppendUploadRequest(
            name=name,
            offset=offset,
            data=httpbody_pb2.HttpBody(content_type="application/octet-stream", data=chunk),
        )
    )


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


def session_dirs(registry: RegistryApp) -> list[Path]:
    return sorted(registry.service.uploads.root.iterdir())


async def test_chunks_in_order_then_commit_creates_the_version(
    registry: RegistryApp, registry_stub: Stub
) -> None:
    name = await start(registry_stub, description="from the browser", tags=["web"])
    parts = chunks(MODEL, 50_000)
    assert len(parts) == 4
    for offset, chunk in parts:
        session = await append(registry_stub, name, offset, chunk)
        assert session.received_bytes == offset + len(chunk)
    assert session.max_chunk_bytes == MAX_CHUNK_BYTES == 8 << 20
    assert session.max_total_bytes == registry.settings.max_upload_bytes
    assert session.metadata.description == "from the browser"
    assert session.expire_time.ToSeconds() > session.create_time.ToSeconds()

    # The last chunk again (its answer was lost): acknowledged, not appended twice.
    offset, chunk = parts[-1]
    again = await append(registry_stub, name, offset, chunk)
    assert again.received_bytes == len(MODEL)
    got = await registry_stub.GetUpload(pb.GetUploadRequest(name=name))
    assert got.received_bytes == len(MODEL) and got.name == name

    version = await registry_stub.CommitUpload(pb.CommitUploadRequest(name=name))
    assert version.name == "models/fraud/versions/1"
    assert version.artifact.sha256 == hashlib.sha256(MODEL).hexdigest()
    assert version.artifact.size_bytes == len(MODEL)
    assert version.description == "from the browser" and list(version.tags) == ["web"]
    assert [i.name for i in version.schema.inputs] == ["x"]
    _, body = await download(registry_stub, version.name)
    assert body == MODEL
    # The bytes are released; a retried commit answers the same version, creates none.
    (session_dir,) = session_dirs(registry)
    assert not (session_dir / "data").exists()
    retried = await registry_stub.CommitUpload(pb.CommitUploadRequest(name=name))
    assert retried.name == version.name and retried.uid == version.uid
    listed = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/fraud")
    )
    assert [v.version for v in listed.versions] == [1]
    error = await failure(append(registry_stub, name, len(MODEL), b"more"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error)[0] == "UPLOAD_COMMITTED"


async def test_offsets_chunk_sizes_and_names_are_checked(registry_stub: Stub) -> None:
    name = await start(registry_stub, size_bytes=len(MODEL))
    await append(registry_stub, name, 0, MODEL[:1000])

    for offset in (0, 999, 1001, 5000):
        error = await failure(append(registry_stub, name, offset, MODEL[offset : offset + 10]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, offset
        why, metadata = reason(error)
        assert why == "WRONG_OFFSET" and metadata["received_bytes"] == "1000"
        assert "next chunk starts at 1000" in (error.details() or "")
    # The last chunk's offset with other bytes is not a retry.
    error = await failure(append(registry_stub, name, 0, b"x" * 1000))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    error = await failure(append(registry_stub, name, 1000, b"\0" * (MAX_CHUNK_BYTES + 1)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(error)[0] == "CHUNK_TOO_LARGE"
    error = await failure(append(registry_stub, name, 1000, b""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await failure(append(registry_stub, name, -1, b"x"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Past the declared size.
    error = await failure(append(registry_stub, name, 1000, MODEL[1000:] + b"extra"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error)[0] == "SIZE_MISMATCH"
    # None of that moved the session.
    got = await registry_stub.GetUpload(pb.GetUploadRequest(name=name))
    assert got.received_bytes == 1000

    for bad in ("uploads/../../etc", "uploads/", "models/fraud", "uploads/ABC"):
        error = await failure(registry_stub.GetUpload(pb.GetUploadRequest(name=bad)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    error = await failure(registry_stub.GetUpload(pb.GetUploadRequest(name="uploads/" + "0" * 32)))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # Committing early: the declared size is not there yet; the session stays usable.
    error = await failure(registry_stub.CommitUpload(pb.CommitUploadRequest(name=name)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == ("SIZE_MISMATCH", {"received_bytes": "1000"})
    await append(registry_stub, name, 1000, MODEL[1000:])
    version = await registry_stub.CommitUpload(pb.CommitUploadRequest(name=name))
    assert version.artifact.size_bytes == len(MODEL)


async def test_start_checks_what_a_streamed_upload_checks(
    registry: RegistryApp, registry_stub: Stub
) -> None:
    error = await failure(registry_stub.StartUpload(pb.StartUploadRequest()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    too_big = pb.UploadMetadata(
        parent="models/fraud", create_model=True, size_bytes=registry.settings.max_upload_bytes + 1
    )
    error = await failure(registry_stub.StartUpload(pb.StartUploadRequest(metadata=too_big)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    missing = pb.UploadMetadata(parent="models/nobody")
    error = await failure(registry_stub.StartUpload(pb.StartUploadRequest(metadata=missing)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    bad_sha = pb.UploadMetadata(parent="models/fraud", create_model=True, sha256="abc")
    error = await failure(registry_stub.StartUpload(pb.StartUploadRequest(metadata=bad_sha)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert session_dirs(registry) == []


async def test_sha_mismatch_and_bad_models_leave_nothing_then_cancel(
    registry: RegistryApp, registry_stub: Stub
) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    metadata = pb.UploadMetadata(parent="models/fraud", create_model=True, sha256=wrong)
    name = (await registry_stub.StartUpload(pb.StartUploadRequest(metadata=metadata))).name
    for offset, chunk in chunks(MODEL, 60_000):
        await append(registry_stub, name, offset, chunk)
    error = await failure(registry_stub.CommitUpload(pb.CommitUploadRequest(name=name)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error)[0] == "DIGEST_MISMATCH"

    junk = await start(registry_stub, data=b"not an onnx model" * 100)
    await append(registry_stub, junk, 0, b"not an onnx model" * 100)
    error = await failure(registry_stub.CommitUpload(pb.CommitUploadRequest(name=junk)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error)[0] == "INVALID_ARTIFACT"

    # No version, no blob, no temp file.
    models = await registry_stub.ListModels(pb.ListModelsRequest())
    assert list(models.models) == []
    blobs = registry.service.blobs
    assert list(blobs.digests()) == [] and list(blobs.tmp_dir.iterdir()) == []

    for session in (name, junk):
        await registry_stub.CancelUpload(pb.CancelUploadRequest(name=session))
        error = await failure(registry_stub.GetUpload(pb.GetUploadRequest(name=session)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        error = await failure(registry_stub.CancelUpload(pb.CancelUploadRequest(name=session)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    assert session_dirs(registry) == []


@pytest.fixture
async def short_lived(database_url: str, tmp_path: Path) -> AsyncIterator[RegistryApp]:
    """A registry whose upload sessions expire after 1 s without an append."""
    app = RegistryApp(registry_settings(database_url, tmp_path, upload_session_ttl_s=1.0))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(2)


async def test_idle_sessions_expire_and_are_removed(short_lived: RegistryApp) -> None:
    async with grpc.aio.insecure_channel(short_lived.address) as channel:
        stub = Stub(channel)
        idle = await start(stub)
        await append(stub, idle, 0, MODEL[:1000])
        busy = await start(stub)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        offset = 0
        # `busy` keeps appending (each append starts its expiry again) while `idle` expires
        # and the sweeper removes its files.
        while len(session_dirs(short_lived)) > 1:
            assert loop.time() < deadline, "the idle session was not removed"
            await append(stub, busy, offset, MODEL[offset : offset + 100])
            offset += 100
            await asyncio.sleep(0.1)
        error = await failure(stub.GetUpload(pb.GetUploadRequest(name=idle)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        error = await failure(append(stub, idle, 1000, MODEL[1000:2000]))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        error = await failure(stub.CommitUpload(pb.CommitUploadRequest(name=idle)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        got = await stub.GetUpload(pb.GetUploadRequest(name=busy))
        assert got.received_bytes == offset


async def test_replicas_sharing_the_blob_folder_continue_each_others_sessions(
    registry: RegistryApp, registry_stub: Stub, database_url: str, tmp_path: Path
) -> None:
    other = RegistryApp(registry_settings(database_url, tmp_path))
    assert other.settings.blob_dir == registry.settings.blob_dir
    await other.start()
    try:
        async with grpc.aio.insecure_channel(other.address) as channel:
            stubs = [registry_stub, Stub(channel)]
            name = await start(registry_stub)
            for i, (offset, chunk) in enumerate(chunks(MODEL, 30_000)):
                await append(stubs[i % 2], name, offset, chunk)
            # Both at once: one commits, the other answers the same version.
            first, second = await asyncio.gather(
                *(stub.CommitUpload(pb.CommitUploadRequest(name=name)) for stub in stubs)
            )
            assert first.name == second.name == "models/fraud/versions/1"
    finally:
        await other.stop(2)
