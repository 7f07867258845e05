"""Inference memory, against a real server: each version's memory measured when it loads,
reported (RepositoryIndex, metrics) and released on unload; the budget checked with the
measured figure; loading on demand switchable off on every path, and not triggered by a
caller with only the reader role."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.api import httpbody_pb2

from modelhub.api.common.v1 import types_pb2
from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import rest_pb2, rest_pb2_grpc
from modelhub.common.settings import AuthSettings
from modelhub.inference.main import InferenceApp
from modelhub.inference.repository import VersionState
from tests.onnx_models import large_matmul
from tests.service.inference.conftest import StartInference, stubs
from tests.service.inference.oip import infer_request
from tests.unit.inference.helpers import mlp_model

X = np.ones((1, 8), np.float32)
READER = (("authorization", "Bearer r3ader"),)
ADMIN = (("authorization", "Bearer adm1n"),)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """`large` (16 MiB of weights, version 1), `small` (version 1) and `m` (versions 1
    and 2: a directory source deploys only the latest)."""
    root = tmp_path / "models"
    large_matmul(root / "large" / "1.onnx", 16 << 20)
    (root / "small.onnx").write_bytes(mlp_model(1))
    (root / "m").mkdir()
    (root / "m" / "1.onnx").write_bytes(mlp_model(1))
    (root / "m" / "2.onnx").write_bytes(mlp_model(2))
    return root


def _gauge(app: InferenceApp, name: str, **labels: str) -> float | None:
    return app.runtime.metrics_registry.get_sample_value(name, labels)


async def _index(repository, metadata: Sequence[tuple[str, str]] = ()) -> dict[str, object]:
    index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest(), metadata=metadata)
    return {f"{m.name}/{m.version}": m for m in index.models}


async def test_measured_memory_is_reported_and_released_on_unload(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(
        model_source="directory", model_dir=str(model_dir), watch_deployments=False
    )
    _, repository = stubs(channel_to(app))
    size = (model_dir / "large" / "1.onnx").stat().st_size
    loaded = await repository.LoadModel(ipb.LoadModelRequest(model="large", version="1"))
    memory = loaded.model.memory_bytes
    # What the sessions were measured to take: at least the weights, as the index says.
    [served] = app.repository.served()
    assert served.measured_bytes >= size
    assert memory == served.measured_bytes
    assert (await _index(repository))["large/1"].memory_bytes == memory
    labels = {"model": "large", "version": "1"}
    assert _gauge(app, "modelhub_inference_model_memory_bytes", **labels) == memory
    assert _gauge(app, "modelhub_inference_memory_bytes") == memory
    budget = app.settings.memory_budget_bytes
    assert _gauge(app, "modelhub_inference_memory_budget_bytes") == budget

    await repository.UnloadModel(ipb.UnloadModelRequest(model="large", version="1"))
    assert await _index(repository) == {}
    assert app.repository.memory_used == 0
    assert _gauge(app, "modelhub_inference_memory_bytes") == 0
    assert _gauge(app, "modelhub_inference_model_memory_bytes", **labels) is None


async def test_a_budget_below_the_measured_size_refuses_and_keeps_serving(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    size = (model_dir / "large" / "1.onnx").stat().st_size
    # Admitted on its file size (factor 1), measured at about twice that: warmed up at
    # 2048 rows, ONNX Runtime's arena keeps a 2048-row output as large as the weights.
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        watch_deployments=False,
        memory_budget_bytes=int(size * 1.5),
        memory_estimate_factor=1.0,
    )
    stub, repository = stubs(channel_to(app))
    await repository.LoadModel(ipb.LoadModelRequest(model="small", version="1"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await repository.LoadModel(
            ipb.LoadModelRequest(
                model="large",
                version="1",
                batching=types_pb2.BatchingConfig(max_batch_size=2048),
            )
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.value.details() or ""
    assert "large/1" in details and "measured when it loaded" in details
    assert "memory budget" in details
    # Nothing of it is left loaded; the other version still serves.
    index = await _index(repository)
    assert index["large/1"].state == ipb.ModelState.FAILED
    assert index["small/1"].state == ipb.ModelState.READY
    assert app.repository.memory_used == index["small/1"].memory_bytes
    assert [s.key for s in app.repository.served()] == [("small", 1)]
    answer = await stub.ModelInfer(infer_request("small", {"x": X}))
    assert answer.model_name == "small"


def _rest_infer(model: str, version: str) -> rest_pb2.RestRequest:
    body = {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [1.0] * 8}]}
    return rest_pb2.RestRequest(
        model_name=model,
        model_version=version,
        body=httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(body).encode()),
    )


async def _stream_errors(
    stub, request: pb.ModelInferRequest, metadata: Sequence[tuple[str, str]] = ()
) -> list[str]:
    async def requests() -> AsyncIterator[pb.ModelInferRequest]:
        yield request

    return [
        answer.error_message
        async for answer in stub.ModelStreamInfer(requests(), metadata=metadata)
    ]


async def test_a_reader_does_not_load_versions_on_demand(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        auth=AuthSettings(tokens="r3ader:reader,adm1n:admin"),
    )
    channel = channel_to(app)
    stub, repository = stubs(channel)
    rest = rest_pb2_grpc.InferenceRestStub(channel)
    # The deployed version (the directory's latest, m/2) serves readers.
    answer = await stub.ModelInfer(infer_request("m", {"x": X}), metadata=READER)
    assert answer.model_version == "2"
    # A version no deployment names does not load for a reader, on any path.
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.ModelInfer(infer_request("m", {"x": X}, version="1"), metadata=READER)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not loaded" in (denied.value.details() or "")
    assert "LoadModel" in (denied.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await rest.ModelInfer(_rest_infer("m", "1"), metadata=READER)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    [error] = await _stream_errors(stub, infer_request("m", {"x": X}, version="1"), READER)
    assert error.startswith("PERMISSION_DENIED") and "LoadModel" in error
    assert sorted(await _index(repository, ADMIN)) == ["large/1", "m/2", "small/1"]
    assert "m/1" not in {f"{m}/{v}" for m, v in (s.key for s in app.repository.served())}
    # An admin's request loads it; then readers use it.
    answer = await stub.ModelInfer(infer_request("m", {"x": X}, version="1"), metadata=ADMIN)
    assert answer.model_version == "1"
    answer = await stub.ModelInfer(infer_request("m", {"x": X}, version="1"), metadata=READER)
    assert answer.model_version == "1"


async def test_loading_on_demand_off_covers_every_path(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        watch_deployments=False,
        load_on_demand=False,
    )
    channel = channel_to(app)
    stub, repository = stubs(channel)
    rest = rest_pb2_grpc.InferenceRestStub(channel)
    refusals = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ModelInfer(infer_request("small", {"x": X}, version="1"))
    assert refused.value.code() in refusals
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await rest.ModelInfer(_rest_infer("small", "1"))
    assert refused.value.code() in refusals
    [error] = await _stream_errors(stub, infer_request("small", {"x": X}, version="1"))
    assert error.split(":")[0] in {code.name for code in refusals}
    # Describing a version does not load it either.
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="small", version="1"))
    assert [t.name for t in metadata.inputs] == ["x"]
    assert await _index(repository) == {}
    assert app.repository.index() == []
    # LoadModel still loads; then requests run.
    await repository.LoadModel(ipb.LoadModelRequest(model="small", version="1"))
    answer = await stub.ModelInfer(infer_request("small", {"x": X}, version="1"))
    assert answer.model_version == "1"
    assert [e.state for e in app.repository.index()] == [VersionState.READY]
