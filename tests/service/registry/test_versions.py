"""Uploading, reading, aliasing and deleting model versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.registry.main import RegistryApp
from tests.onnx_models import add_constant, two_inputs
from tests.polling import wait_for
from tests.service.registry.helpers import download, upload, upload_requests

Stub = registry_pb2_grpc.RegistryServiceStub


async def test_upload_extracts_schema_and_downloads_back(registry_stub: Stub) -> None:
    data = add_constant(1.0)
    version = await upload(
        registry_stub,
        "fraud",
        data,
        description="first",
        author="ana",
        source=pb.Source(run_id="run-1", dataset="s3://data/2026-11"),
        metadata={"auc": "0.91"},
        tags=["baseline"],
    )
    assert version.name == "models/fraud/versions/1"
    assert version.version == 1
    assert version.status == pb.ModelVersion.READY
    assert version.artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert version.artifact.size_bytes == len(data)
    assert version.source.run_id == "run-1"
    assert version.metadata["auc"] == "0.91"
    assert [i.name for i in version.schema.inputs] == ["x"]
    assert version.schema.inputs[0].datatype == "FP32"
    assert list(version.schema.inputs[0].shape) == [-1, 4]
    assert list(version.schema.inputs[0].dim_names) == ["batch", ""]
    assert version.schema.outputs[0].name == "y"
    assert version.schema.producer_name == "modelhub-tests"
    assert (version.schema.opsets[0].domain, version.schema.opsets[0].version) == ("", 17)
    assert version.uid

    header, body = await download(registry_stub, "models/fraud/versions/1")
    assert header.artifact.sha256 == hashlib.sha256(body).hexdigest() == version.artifact.sha256
    assert body == data

    several = await upload(registry_stub, "multi", two_inputs())
    assert [(t.name, t.datatype) for t in several.schema.inputs] == [
        ("a", "INT64"),
        ("b", "INT64"),
        ("scores", "FP64"),
    ]
    assert list(several.schema.outputs[1].shape) == [-1]


async def test_twenty_concurrent_uploads_get_versions_1_to_20(registry_stub: Stub) -> None:
    await registry_stub.CreateModel(pb.CreateModelRequest(model_id="busy"))
    results = await asyncio.gather(
        *[
            upload(registry_stub, "busy", add_constant(float(i)), create_model=False)
            for i in range(20)
        ]
    )
    assert sorted(v.version for v in results) == list(range(1, 21))
    listed = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/busy", page_size=100)
    )
    assert [v.version for v in listed.versions] == list(range(20, 0, -1))
    # Each version points at the artifact uploaded with it.
    for version in results:
        _, body = await download(registry_stub, version.name)
        assert hashlib.sha256(body).hexdigest() == version.artifact.sha256
    model = await registry_stub.GetModel(pb.GetModelRequest(name="models/busy"))
    assert model.latest_version == 20


async def test_identical_artifacts_are_stored_once(
    registry: RegistryApp, registry_stub: Stub
) -> None:
    data = add_constant(3.0)
    first = await upload(registry_stub, "dedup", data)
    second = await upload(registry_stub, "dedup", data)
    assert (first.version, second.version) == (1, 2)
    blobs = list(registry.service.blobs.digests())
    assert blobs == [first.artifact.sha256]
    # Deleting one version keeps the blob the other still uses; deleting both removes it.
    await registry_stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name=first.name))
    assert list(registry.service.blobs.digests()) == [first.artifact.sha256]
    _, body = await download(registry_stub, second.name)
    assert body == data
    await registry_stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name=second.name))
    assert list(registry.service.blobs.digests()) == []


async def test_cancelled_upload_leaves_nothing(registry: RegistryApp, registry_stub: Stub) -> None:
    keep = await upload(registry_stub, "cancel", add_constant(1.0))
    started = asyncio.Event()
    release = asyncio.Event()
    data = add_constant(2.0)

    async def slow_requests():
        yield pb.UploadModelVersionRequest(metadata=pb.UploadMetadata(parent="models/cancel"))
        yield pb.UploadModelVersionRequest(chunk=data[:100])
        started.set()
        await release.wait()
        yield pb.UploadModelVersionRequest(chunk=data[100:])

    call = registry_stub.UploadModelVersion(slow_requests())
    await started.wait()
    # The server has written the first chunk to a temp file.
    await wait_for(lambda: any(registry.service.blobs.tmp_dir.iterdir()))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    for _ in range(50):
        if not list(registry.service.blobs.tmp_dir.iterdir()):
            break
        await asyncio.sleep(0.05)
    assert list(registry.service.blobs.tmp_dir.iterdir()) == []
    assert list(registry.service.blobs.digests()) == [keep.artifact.sha256]
    listed = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/cancel")
    )
    assert [v.version for v in listed.versions] == [1]
    # The next upload gets number 2: the cancelled one consumed nothing.
    again = await upload(registry_stub, "cancel", data)
    assert again.version == 2


async def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("../x", "not valid"),
        ("", "is required"),
        ("a" * 200, "not valid"),
        ("módèl", "not valid"),
        ("Fraud", "not valid"),
    ],
)
async def test_bad_model_names(registry_stub: Stub, model: str, fragment: str) -> None:
    code, details = await _code(registry_stub.CreateModel(pb.CreateModelRequest(model_id=model)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details
    code, _ = await _code(upload(registry_stub, model, add_constant()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_artifacts_and_uploads(registry: RegistryApp, registry_stub: Stub) -> None:
    good = add_constant(1.0)
    cases = [
        (b"this is not an onnx model at all" * 10, grpc.StatusCode.INVALID_ARGUMENT, "ONNX"),
        (good[: len(good) // 2], grpc.StatusCode.INVALID_ARGUMENT, "ONNX"),
    ]
    for data, code, fragment in cases:
        got, details = await _code(upload(registry_stub, "bad", data))
        assert got == code, details
        assert fragment in details

    # Wrong declared digest.
    metadata = pb.UploadMetadata(parent="models/bad", create_model=True, sha256="0" * 64)
    got, details = await _code(registry_stub.UploadModelVersion(upload_requests(metadata, good)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    assert "sha256" in details
    # Malformed digest.
    metadata = pb.UploadMetadata(parent="models/bad", create_model=True, sha256="xyz")
    got, _ = await _code(registry_stub.UploadModelVersion(upload_requests(metadata, good)))
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    # Unknown model without create_model.
    got, details = await _code(upload(registry_stub, "nobody", good, create_model=False))
    assert got == grpc.StatusCode.NOT_FOUND
    assert "create_model" in details

    # No metadata first.
    async def chunk_first():
        yield pb.UploadModelVersionRequest(chunk=good)

    got, details = await _code(registry_stub.UploadModelVersion(chunk_first()))
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata" in details
    # Nothing was stored by any of these.
    assert list(registry.service.blobs.digests()) == []
    assert list(registry.service.blobs.tmp_dir.iterdir()) == []
    listed = await registry_stub.ListModels(pb.ListModelsRequest())
    assert [m.name for m in listed.models] in ([], ["models/bad"])
    if listed.models:
        versions = await registry_stub.ListModelVersions(
            pb.ListModelVersionsRequest(parent="models/bad")
        )
        assert list(versions.versions) == []


async def test_oversize_upload(database_url: str, tmp_path) -> None:
    from tests.conftest import registry_settings

    app = RegistryApp(registry_settings(database_url, tmp_path, max_upload_bytes=1000))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = Stub(channel)
            data = add_constant(1.0, features=512)
            assert len(data) > 1000
            got, details = await _code(upload(stub, "big", data))
            assert got == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1000" in details
            # Declared up front: refused before any byte.
            metadata = pb.UploadMetadata(
                parent="models/big", create_model=True, size_bytes=len(data)
            )
            got, _ = await _code(stub.UploadModelVersion(upload_requests(metadata, data)))
            assert got == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert list(app.service.blobs.digests()) == []
            assert list(app.service.blobs.tmp_dir.iterdir()) == []
    finally:
        await app.stop(2)


async def test_aliases_resolve_and_archive(registry_stub: Stub) -> None:
    for value in (1.0, 2.0, 3.0):
        await upload(registry_stub, "fraud", add_constant(value))
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="champion", version=2)
    )
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="challenger", version=3)
    )

    for reference, expected in [
        ("fraud@champion", 2),
        ("fraud/versions/1", 1),
        ("models/fraud/versions/3", 3),
        ("fraud:1", 1),
        ("fraud@latest", 3),
        ("models/fraud@challenger", 3),
        ("fraud", 3),
    ]:
        got = await registry_stub.ResolveModelVersion(
            pb.ResolveModelVersionRequest(reference=reference)
        )
        assert got.version == expected, reference
    by_alias = await registry_stub.GetModelVersion(
        pb.GetModelVersionRequest(name="models/fraud@champion")
    )
    assert by_alias.version == 2
    assert list(by_alias.aliases) == ["champion"]

    listed = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/fraud")
    )
    assert {v.version: list(v.aliases) for v in listed.versions} == {
        3: ["challenger"],
        2: ["champion"],
        1: [],
    }
    only = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/fraud", alias="champion")
    )
    assert [v.version for v in only.versions] == [2]

    # Moving an alias.
    await registry_stub.SetAlias(
        pb.SetAliasRequest(parent="models/fraud", alias="champion", version=3)
    )
    moved = await registry_stub.ResolveModelVersion(
        pb.ResolveModelVersionRequest(reference="fraud@champion")
    )
    assert moved.version == 3

    # Archiving the newest makes `latest` fall back to the newest READY one.
    archived = await registry_stub.ArchiveModelVersion(
        pb.ArchiveModelVersionRequest(name="models/fraud/versions/3")
    )
    assert archived.status == pb.ModelVersion.ARCHIVED
    latest = await registry_stub.ResolveModelVersion(
        pb.ResolveModelVersionRequest(reference="fraud@latest")
    )
    assert latest.version == 2
    ready = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/fraud", status=pb.ModelVersion.READY)
    )
    assert [v.version for v in ready.versions] == [2, 1]
    # Archived versions still download.
    _, body = await download(registry_stub, "models/fraud/versions/3")
    assert body == add_constant(3.0)

    # Errors: unknown model/version/alias, reserved alias, aliasing an archived version.
    for call, code in [
        (
            registry_stub.ResolveModelVersion(
                pb.ResolveModelVersionRequest(reference="nope@champion")
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            registry_stub.GetModelVersion(
                pb.GetModelVersionRequest(name="models/fraud/versions/9")
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            registry_stub.GetModelVersion(pb.GetModelVersionRequest(name="models/fraud@nobody")),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            registry_stub.GetModelVersion(
                pb.GetModelVersionRequest(name="models/fraud/versions/zero")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            registry_stub.SetAlias(
                pb.SetAliasRequest(parent="models/fraud", alias="latest", version=1)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            registry_stub.SetAlias(
                pb.SetAliasRequest(parent="models/fraud", alias="old", version=3)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            registry_stub.SetAlias(
                pb.SetAliasRequest(parent="models/fraud", alias="x", version=42)
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            registry_stub.DeleteAlias(pb.DeleteAliasRequest(name="models/fraud/aliases/nobody")),
            grpc.StatusCode.NOT_FOUND,
        ),
    ]:
        got, details = await _code(call)
        assert got == code, details

    await registry_stub.DeleteAlias(pb.DeleteAliasRequest(name="models/fraud/aliases/challenger"))
    aliases = await registry_stub.ListAliases(pb.ListAliasesRequest(parent="models/fraud"))
    assert [(a.alias, a.version) for a in aliases.aliases] == [("champion", 3)]


async def test_update_version_and_data_profile(registry_stub: Stub) -> None:
    from google.protobuf.field_mask_pb2 import FieldMask

    profile = types_pb2.DataProfile(
        features=[
            types_pb2.FeatureProfile(
                name="amount",
                kind=types_pb2.FeatureProfile.NUMERIC,
                bin_edges=[0, 10, 100],
                counts=[5, 7],
                count=12,
            ),
            types_pb2.FeatureProfile(
                name="country",
                kind=types_pb2.FeatureProfile.CATEGORICAL,
                categories=["de", "fr"],
                counts=[3, 4],
            ),
        ]
    )
    created = await upload(registry_stub, "prof", add_constant(), data_profile=profile)
    full = await registry_stub.GetModelVersion(pb.GetModelVersionRequest(name=created.name))
    assert full.data_profile == profile
    basic = await registry_stub.ListModelVersions(pb.ListModelVersionsRequest(parent="models/prof"))
    assert not basic.versions[0].HasField("data_profile")

    updated = await registry_stub.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            version=pb.ModelVersion(
                name=created.name, description="better", tags=["prod"], etag=full.etag
            ),
            update_mask=FieldMask(paths=["description", "tags"]),
        )
    )
    assert updated.description == "better"
    assert list(updated.tags) == ["prod"]
    assert updated.data_profile == profile  # untouched
    assert updated.etag != full.etag
    # Stale etag.
    got, details = await _code(
        registry_stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=pb.ModelVersion(name=created.name, description="x", etag=full.etag),
                update_mask=FieldMask(paths=["description"]),
            )
        )
    )
    assert got == grpc.StatusCode.ABORTED
    assert "read it again" in details
    # Not updatable and malformed profile.
    got, _ = await _code(
        registry_stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=pb.ModelVersion(name=created.name),
                update_mask=FieldMask(paths=["artifact"]),
            )
        )
    )
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    bad_profile = types_pb2.DataProfile(
        features=[
            types_pb2.FeatureProfile(
                name="amount", kind=types_pb2.FeatureProfile.NUMERIC, bin_edges=[10, 0], counts=[1]
            )
        ]
    )
    got, details = await _code(
        registry_stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=pb.ModelVersion(name=created.name, data_profile=bad_profile),
                update_mask=FieldMask(paths=["data_profile"]),
            )
        )
    )
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    assert "increasing" in details
    tagged = await registry_stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/prof", tag="prod")
    )
    assert [v.version for v in tagged.versions] == [1]
