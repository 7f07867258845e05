"""The inference service against a real registry: deployments followed through Watch,
a version swap under load, LRU eviction, load on demand, explicit load/unload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import field_mask_pb2

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc as rpb_grpc
from tests.service.inference.conftest import StartInference, stubs
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import mlp_model

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
) -> None:
    sizes = [
        (await upload(registry, name, mlp_model(seed))).artifact.size_bytes
        for name, seed in (("a", 1), ("b", 2), ("c", 3))
    ]
    app = await start_inference(
        registry_address=registry_address, memory_budget_bytes=int(max(sizes) * 2.5)
    )
    stub, repository = stubs(channel_to(app))
    for name in ("a", "b"):
        await repository.LoadModel(ipb.LoadModelRequest(model=name))
    await stub.ModelInfer(infer_request("a", {"x": X}))  # a used: b is the LRU now
    await repository.LoadModel(ipb.LoadModelRequest(model="c"))

    async def loaded() -> list[str]:
        index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest(ready_only=True))
        return sorted(m.name for m in index.models)

    assert await loaded() == ["a", "c"]
    # The evicted version loads again on request, and answers correctly.
    answer = await stub.ModelInfer(infer_request("b", {"x": X}))
    np.testing.assert_allclose(outputs_of(answer)["y"], _expected(2), rtol=1e-5, atol=1e-5)
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
