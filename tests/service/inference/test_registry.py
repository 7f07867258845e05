"""The inference service against a real registry: deployments followed through Watch,
a version swap under load, LRU eviction, load on demand, explicit load/unload, and a
registry restored from a backup (re-listed)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc as rpb_grpc
from modelhub.inference.api import SERVICE_NAME
from modelhub.inference.source import (
    DeploymentSpec,
    EventType,
    ResourceKind,
    SourceEvent,
    VersionInfo,
    VersionSelector,
)
from modelhub.registry.main import RegistryApp
from modelhub.registry.migrate import upgrade
from tests.conftest import registry_settings
from tests.onnx_models import large_matmul
from tests.service.inference.conftest import StartInference, stubs
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import MemorySource, mlp_model

X = np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32)


def _expected(seed: int) -> np.ndarray:
    session = ort.InferenceSession(mlp_model(seed), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X})[0]


@pytest.fixture
async def registry(registry_address: str) -> AsyncIterator[rpb_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(registry_address) as channel:
        yield rpb_grpc.RegistryServiceStub(channel)


async def upload(
    registry: rpb_grpc.RegistryServiceStub, model: str, data: bytes, aliases: Sequence[str] = ()
) -> rpb.ModelVersion:
    async def messages() -> AsyncIterator[rpb.UploadModelVersionRequest]:
        yield rpb.UploadModelVersionRequest(
            metadata=rpb.UploadMetadata(
                parent=f"models/{model}", create_model=True, aliases=list(aliases)
            )
        )
        for start in range(0, len(data), 16384):
            yield rpb.UploadModelVersionRequest(chunk=data[start : start + 16384])

    return await registry.UploadModelVersion(messages())


async def _until_version(stub, model: str, version: str) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(30):
        while True:
            answer = await stub.ModelInfer(infer_request(model, {"x": X}))
            if answer.model_version == version:
                return
            await asyncio.sleep(0.02)


async def test_version_swap_under_load_fails_no_request(
    registry: rpb_grpc.RegistryServiceStub,
    registry_address: str,
    start_inference: StartInference,
    channel_to,
) -> None:
    await upload(registry, "fraud", mlp_model(1))
    await upload(registry, "fraud", mlp_model(2))
    await registry.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment_id="fraud",
            deployment=rpb.Deployment(
                model="models/fraud", versions=[rpb.VersionSelector(version=1)]
            ),
        )
    )
    app = await start_inference(registry_address=registry_address, max_batch_size=8)
    stub, repository = stubs(channel_to(app))
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="fraud", version="1"))).ready
    expected = {"1": _expected(1), "2": _expected(2)}

    served: list[str] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                answer = await stub.ModelInfer(infer_request("fraud", {"x": X}), timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc)
                continue
            served.append(answer.model_version)
            np.testing.assert_allclose(
                outputs_of(answer)["y"], expected[answer.model_version], rtol=1e-5, atol=1e-5
            )

    clients = [asyncio.ensure_future(client()) for _ in range(8)]
    await asyncio.sleep(0.3)
    await registry.UpdateDeployment(
        rpb.UpdateDeploymentRequest(
            deployment=rpb.Deployment(
                name="deployments/fraud", versions=[rpb.VersionSelector(version=2)]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["versions"]),
        )
    )
    async with asyncio.timeout(30):
        while served[-20:] != ["2"] * 20 or len(served) < 40:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*clients)

    assert failures == []
    assert served[0] == "1"
    switch = served.index("2")
    assert set(served[switch + 16 :]) == {"2"}  # at most the in-flight ones finish on v1
    async with asyncio.timeout(30):  # v1 unloads once drained
        while True:
            index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest())
            if [(m.name, m.version) for m in index.models] == [("fraud", "2")]:
                break
            await asyncio.sleep(0.05)
    assert index.models[0].pinned


async def test_eviction_and_reload_within_the_memory_budget(
    registry: rpb_grpc.RegistryServiceStub,
    registry_address: str,
    start_inference: StartInference,
    channel_to,
    tmp_path: Path,
) -> None:
    # 8 MiB models: each takes its file size and a little more (measured when it loads),
    # so two fit in 2.7× the file size and three do not.
    data = large_matmul(tmp_path / "large.onnx", 8 << 20).read_bytes()
    sizes = [(await upload(registry, name, data)).artifact.size_bytes for name in "abc"]
    app = await start_inference(
        registry_address=registry_address, memory_budget_bytes=int(max(sizes) * 2.7)
    )
    stub, repository = stubs(channel_to(app))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.ones((2, session.get_inputs()[0].shape[1]), np.float32)
    for name in ("a", "b"):
        await repository.LoadModel(ipb.LoadModelRequest(model=name))
    await stub.ModelInfer(infer_request("a", {"x": x}))  # a used: b is the LRU now
    await repository.LoadModel(ipb.LoadModelRequest(model="c"))

    async def loaded() -> list[str]:
        index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest(ready_only=True))
        return sorted(m.name for m in index.models)

    assert await loaded() == ["a", "c"]
    # The evicted version loads again on request, and answers correctly.
    answer = await stub.ModelInfer(infer_request("b", {"x": x}))
    expected = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(outputs_of(answer)["y"], expected, rtol=1e-4)
    assert await loaded() == ["b", "c"]  # a was least recently used this time


async def test_load_on_demand_aliases_and_explicit_unload(
    registry: rpb_grpc.RegistryServiceStub,
    registry_address: str,
    start_inference: StartInference,
    channel_to,
) -> None:
    await upload(registry, "churn", mlp_model(1), aliases=["champion"])
    await upload(registry, "churn", mlp_model(2))
    await upload(registry, "pinned", mlp_model(3))
    await registry.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment_id="pinned",
            deployment=rpb.Deployment(model="models/pinned", versions=[rpb.VersionSelector()]),
        )
    )
    app = await start_inference(registry_address=registry_address)
    stub, repository = stubs(channel_to(app))
    # No version: the champion, loaded on this first request.
    answer = await stub.ModelInfer(infer_request("churn", {"x": X}))
    assert answer.model_version == "1"
    np.testing.assert_allclose(outputs_of(answer)["y"], _expected(1), rtol=1e-5, atol=1e-5)
    assert (
        await stub.ModelInfer(infer_request("churn", {"x": X}, version="2"))
    ).model_version == "2"
    latest = await stub.ModelInfer(infer_request("churn", {"x": X}, version="latest"))
    assert latest.model_version == "2"
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="churn"))
    assert list(metadata.versions) == ["1", "2"]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await repository.UnloadModel(ipb.UnloadModelRequest(model="pinned", version="1"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await repository.UnloadModel(ipb.UnloadModelRequest(model="churn", version="2"))
    index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest())
    assert sorted((m.name, m.version) for m in index.models) == [("churn", "1"), ("pinned", "1")]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await repository.UnloadModel(ipb.UnloadModelRequest(model="churn", version="2"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    loaded = await repository.LoadModel(
        ipb.LoadModelRequest(model="churn", version="2", instance_count=2)
    )
    assert loaded.model.instance_count == 2
    assert loaded.model.state == ipb.READY
    stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model="churn"))
    by_version = {s.version: s for s in stats.model_stats}
    assert by_version["1"].inference_count == 2  # two rows
    assert by_version["1"].inference_stats.success.count == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(infer_request("churn", {"x": X}, version="9"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_default_alias_setting(
    registry: rpb_grpc.RegistryServiceStub,
    registry_address: str,
    start_inference: StartInference,
    channel_to,
) -> None:
    await upload(registry, "scorer", mlp_model(1), aliases=["stable"])
    await upload(registry, "scorer", mlp_model(2), aliases=["champion"])
    await upload(registry, "scorer", mlp_model(3))
    for alias, expected in (("champion", "2"), ("stable", "1"), ("", "3")):
        app = await start_inference(registry_address=registry_address, default_alias=alias)
        stub, _ = stubs(channel_to(app))
        answer = await stub.ModelInfer(infer_request("models/scorer", {"x": X}))
        assert answer.model_version == expected, alias


def _backup(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, like an operator's backup."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _deploy(deployment_id: str, model: str, version: int) -> rpb.CreateDeploymentRequest:
    return rpb.CreateDeploymentRequest(
        deployment_id=deployment_id,
        deployment=rpb.Deployment(
            model=f"models/{model}", versions=[rpb.VersionSelector(version=version)]
        ),
    )


async def test_a_registry_restored_from_a_backup_is_relisted(
    tmp_path: Path, start_inference: StartInference, channel_to
) -> None:
    """Inference follows the registry up to revision N; the registry restarts on a backup
    whose head is below N. The watch answers OUT_OF_RANGE (REVISION_AHEAD) and inference
    re-lists: within seconds it serves the restored deployments and follows new changes."""
    live, backup = tmp_path / "live.db", tmp_path / "backup.db"
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{live}")

    async def registry_on(path: Path, port: int = 0) -> RegistryApp:
        app = RegistryApp(registry_settings(f"sqlite+aiosqlite:///{path}", tmp_path, port=port))
        await app.start()
        return app

    registry_app = await registry_on(live)
    port = registry_app.runtime.port
    try:
        async with grpc.aio.insecure_channel(registry_app.address) as channel:
            registry = rpb_grpc.RegistryServiceStub(channel)
            await upload(registry, "fraud", mlp_model(1))
            await upload(registry, "fraud", mlp_model(2))
            await registry.CreateDeployment(_deploy("fraud", "fraud", 1))
            app = await start_inference(registry_address=registry_app.address)
            assert app.watcher is not None
            stub, _ = stubs(channel_to(app))
            await _until_version(stub, "fraud", "1")
            await asyncio.to_thread(_backup, live, backup)
            # Lost in the restore: version 2 deployed, a second deployment, alias churn.
            for i in range(20):
                await registry.SetAlias(
                    rpb.SetAliasRequest(parent="models/fraud", alias="flip", version=1 + i % 2)
                )
            await registry.UpdateDeployment(
                rpb.UpdateDeploymentRequest(
                    deployment=rpb.Deployment(
                        name="deployments/fraud", versions=[rpb.VersionSelector(version=2)]
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["versions"]),
                )
            )
            await registry.CreateDeployment(_deploy("lost", "fraud", 2))
            await _until_version(stub, "fraud", "2")
        seen = app.watcher.revision

        await registry_app.stop(0)
        registry_app = await registry_on(backup, port)
        async with grpc.aio.insecure_channel(registry_app.address) as channel:
            registry = rpb_grpc.RegistryServiceStub(channel)
            await upload(registry, "churn", mlp_model(3))
            await registry.CreateDeployment(_deploy("churn", "churn", 1))

        async with asyncio.timeout(10):
            while "deployments/churn" not in app.watcher.deployments:
                await asyncio.sleep(0.02)
        assert sorted(app.watcher.deployments) == ["deployments/churn", "deployments/fraud"]
        assert app.watcher.revision < seen
        await _until_version(stub, "fraud", "1")
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="churn", version="1"))).ready
    finally:
        await registry_app.stop(0)


class _HeldSource(MemorySource):
    """Downloads wait for `release` (a slow artifact store after a restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        await self.release.wait()
        async for chunk in super().download(info):
            yield chunk


def _held_source(corrupt: bool = False) -> _HeldSource:
    source = _HeldSource()
    source.add("fraud", 1, mlp_model(1))
    source.corrupt_next_download = corrupt
    spec = DeploymentSpec("fraud", "fraud", (VersionSelector(version=1),))
    source.snapshot = [
        SourceEvent(EventType.PUT, 3, ResourceKind.DEPLOYMENT, spec.name, spec.model, spec)
    ]
    return source


async def _health(channel: grpc.aio.Channel) -> dict[str, int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return {
        service: (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status
        for service in ("", SERVICE_NAME)
    }


async def test_not_ready_until_the_deployed_versions_are_loaded(
    start_inference: StartInference, channel_to
) -> None:
    """After a restart, health and ServerReady wait for the versions the deployments pin
    (the router and Kubernetes probes trust them); ServerLive answers at once."""
    source = _held_source()
    app = await start_inference(source=source, wait_ready=False)
    channel = channel_to(app)
    stub, _ = stubs(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    for _ in range(10):
        assert await _health(channel) == {"": not_serving, SERVICE_NAME: not_serving}
        assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        await asyncio.sleep(0.02)

    source.release.set()
    async with asyncio.timeout(10):
        while (await _health(channel))[""] != serving:
            await asyncio.sleep(0.01)
    # Once health says SERVING, the deployed version answers: nothing is left to load.
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="fraud", version="1"))).ready
    assert await _health(channel) == {"": serving, SERVICE_NAME: serving}
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready


async def test_a_version_that_fails_to_load_does_not_hold_readiness(
    start_inference: StartInference, channel_to, caplog: pytest.LogCaptureFixture
) -> None:
    source = _held_source(corrupt=True)
    app = await start_inference(source=source, wait_ready=False)
    channel = channel_to(app)
    stub, _ = stubs(channel)
    assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
    source.release.set()
    async with asyncio.timeout(10):
        while (await _health(channel))[""] != health_pb2.HealthCheckResponse.SERVING:
            await asyncio.sleep(0.01)
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    assert any("failed to load" in record.getMessage() for record in caplog.records)
