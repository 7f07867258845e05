"""ModelInfer end to end: every datatype, typed and raw contents, merged multi-row
batches, requested outputs, metadata — numbers compared with onnxruntime called directly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.dtypes import OIP_TO_NUMPY
from modelhub.inference.convert import TYPED_FIELD
from tests.service.inference.conftest import StartInference, stubs, write_models
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import RunGate, double_model, mlp_model, two_io_model

DATATYPES = ["FP32", "FP16", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL"]


def _sample(datatype: str, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = OIP_TO_NUMPY[datatype]
    if datatype == "BOOL":
        return rng.integers(0, 2, (rows, 3)).astype(bool)
    if dtype.kind in "iu":
        return rng.integers(0 if dtype.kind == "u" else -50, 50, (rows, 3)).astype(dtype)
    return rng.standard_normal((rows, 3)).astype(dtype)


def _onnxruntime(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    models = {f"double-{d.lower()}": double_model(d) for d in DATATYPES}
    models["mlp"] = mlp_model(7)
    models["two-io"] = two_io_model()
    return write_models(tmp_path / "models", models)


async def test_each_datatype_matches_onnxruntime(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    for datatype in DATATYPES:
        name = f"double-{datatype.lower()}"
        x = _sample(datatype, 5)
        (expected,) = _onnxruntime(double_model(datatype), {"x": x})
        raw = await stub.ModelInfer(infer_request(name, {"x": x}))
        got = outputs_of(raw)["y"]
        assert got.dtype == expected.dtype, datatype
        np.testing.assert_array_equal(got, expected)
        assert raw.outputs[0].datatype == datatype
        if datatype in TYPED_FIELD:  # the same through typed contents
            typed = pb.ModelInferRequest(model_name=name)
            tensor = typed.inputs.add(name="x", datatype=datatype, shape=x.shape)
            getattr(tensor.contents, TYPED_FIELD[datatype]).extend(x.ravel().tolist())
            answer = await stub.ModelInfer(typed)
            # Typed in, typed out (numbers for JSON clients, not base64 bytes).
            assert not answer.raw_output_contents
            got_typed = outputs_of(answer)["y"]
            assert got_typed.dtype == expected.dtype, datatype
            np.testing.assert_array_equal(got_typed, expected)


async def test_multi_row_requests_merge_into_one_batch(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    gate = RunGate(models=["mlp"])
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        run_hook=gate,
        max_batch_size=16,
        inline_compute_us=0,  # the gate holds runs: keep them off the event loop
    )
    gate.entered.clear()
    stub, repository = stubs(channel_to(app))
    gate.close()
    first = asyncio.ensure_future(
        stub.ModelInfer(infer_request("mlp", {"x": _sample("FP32", 1, 0).repeat(8, 1)[:, :8]}))
    )
    await asyncio.to_thread(gate.entered.wait, 10)  # the executor is busy with `first`
    inputs = [
        np.random.default_rng(s).standard_normal((n, 8)).astype(np.float32)
        for s, n in ((1, 1), (2, 3), (3, 7))
    ]
    calls = [asyncio.ensure_future(stub.ModelInfer(infer_request("mlp", {"x": x}))) for x in inputs]
    while True:  # until all three wait in the queue together
        stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model="mlp"))
        if stats.model_stats[0].queue_depth == 3:
            break
        await asyncio.sleep(0.01)
    gate.open()
    await first
    answers = await asyncio.gather(*calls)
    for x, answer in zip(inputs, answers, strict=True):
        (expected,) = _onnxruntime(mlp_model(7), {"x": x})
        np.testing.assert_allclose(outputs_of(answer)["y"], expected, rtol=1e-5, atol=1e-5)
    assert gate.rows_seen("mlp")[-1] == 11  # 1 + 3 + 7 rows in one run
    stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model="mlp"))
    sizes = {b.batch_size for b in stats.model_stats[0].batch_stats}
    assert 11 in sizes


async def test_requested_outputs_id_and_parameters(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    z = np.array([[1, 2], [3, 4]], np.int64)
    request = infer_request("two-io", {"z": z, "x": x}, request_id="abc", outputs=["twice"])
    request.parameters["sticky"].string_param = "user-1"
    response = await stub.ModelInfer(request)
    assert response.id == "abc"
    assert (response.model_name, response.model_version) == ("two-io", "1")
    assert response.parameters["sticky"].string_param == "user-1"
    assert list(outputs_of(response)) == ["twice"]
    np.testing.assert_array_equal(outputs_of(response)["twice"], z * 2)
    everything = outputs_of(await stub.ModelInfer(infer_request("two-io", {"x": x, "z": z})))
    np.testing.assert_allclose(everything["sum"], x.sum(axis=1, keepdims=True))


async def test_server_and_model_metadata(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, repository = stubs(channel_to(app))
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    metadata = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "modelhub-inference"
    assert "statistics" in metadata.extensions
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp"))).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp", version="1"))).ready
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="nope"))).ready
    model = await stub.ModelMetadata(pb.ModelMetadataRequest(name="two-io"))
    assert model.platform == "onnxruntime_onnx"
    assert list(model.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        ("x", "FP32", [-1, 3]),
        ("z", "INT64", [-1, 2]),
    ]
    assert [t.name for t in model.outputs] == ["sum", "twice"]
    index = await repository.RepositoryIndex(ipb.RepositoryIndexRequest(ready_only=True))
    assert {m.name for m in index.models} >= {"mlp", "two-io"}
    entry = next(m for m in index.models if m.name == "mlp")
    assert entry.state == ipb.READY
    assert entry.execution_provider == "CPUExecutionProvider"
    assert entry.pinned  # the directory source deploys every model
