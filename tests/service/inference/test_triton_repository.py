"""Triton's repository, statistics and configuration RPCs on inference.GRPCInferenceService
(RepositoryIndex, RepositoryModelLoad/Unload, ModelStatistics, ModelConfig), through the
generated stubs against a real inference server."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.api.oip import model_config_pb2 as mpb
from modelhub.common.settings import AuthSettings
from tests.service.inference.conftest import StartInference, write_models
from tests.service.inference.oip import infer_request
from tests.unit.inference.helpers import MemorySource, double_model, mlp_model

X = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)


def _index(response: pb.RepositoryIndexResponse) -> list[tuple[str, str, str]]:
    return [(m.name, m.version, m.state) for m in response.models]


async def test_repository_statistics_and_config(
    start_inference: StartInference, tmp_path: Path
) -> None:
    source = MemorySource()
    source.add("mlp", 1, mlp_model(1, outputs=4))
    source.add("double", 1, double_model("INT64"))
    app = await start_inference(
        source=source,
        max_batch_size=16,
        max_queue_delay_us=500,
        priority_levels=2,
    )
    async with grpc.aio.insecure_channel(app.address) as channel:
        oip = pb_grpc.GRPCInferenceServiceStub(channel)
        assert _index(await oip.RepositoryIndex(pb.RepositoryIndexRequest())) == []

        # Configuration describes a version without loading it.
        config = (await oip.ModelConfig(pb.ModelConfigRequest(name="mlp"))).config
        assert (config.name, config.platform, config.backend) == (
            "mlp",
            "onnxruntime_onnx",
            "onnxruntime",
        )
        assert config.max_batch_size == 16
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
            ("x", mpb.TYPE_FP32, [8])
        ]
        assert [(t.name, t.data_type) for t in config.output] == [("y", mpb.TYPE_FP32)]
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert config.dynamic_batching.priority_levels == 2
        assert list(config.dynamic_batching.preferred_batch_size) == []
        (group,) = config.instance_group
        assert (group.count, group.kind) == (1, mpb.ModelInstanceGroup.KIND_CPU)

        await oip.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="mlp"))
        assert _index(await oip.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))) == [
            ("mlp", "1", "READY")
        ]
        config = (await oip.ModelConfig(pb.ModelConfigRequest(name="mlp", version="1"))).config
        assert config.instance_group[0].kind == mpb.ModelInstanceGroup.KIND_CPU
        int64 = (await oip.ModelConfig(pb.ModelConfigRequest(name="double"))).config
        assert int64.input[0].data_type == mpb.TYPE_INT64

        before = time.time_ns() // 1_000_000
        await oip.ModelInfer(infer_request("mlp", {"x": X}))
        await oip.ModelInfer(infer_request("mlp", {"x": X[:1]}))
        (stats,) = (await oip.ModelStatistics(pb.ModelStatisticsRequest(name="mlp"))).model_stats
        assert (stats.name, stats.version) == ("mlp", "1")
        assert stats.inference_count == 4
        assert stats.execution_count >= 1
        assert stats.last_inference >= before - 1000
        assert stats.inference_stats.success.count == 2
        assert stats.inference_stats.success.ns > 0
        assert stats.inference_stats.compute_infer.count == 2
        assert stats.inference_stats.fail.count == 0
        assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 4
        everything = await oip.ModelStatistics(pb.ModelStatisticsRequest())
        assert [s.name for s in everything.model_stats] == ["mlp"]

        await oip.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="mlp"))
        assert _index(await oip.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))) == []

        failures = [
            (oip.ModelStatistics(pb.ModelStatisticsRequest(name="mlp")), "NOT_FOUND"),
            (oip.ModelConfig(pb.ModelConfigRequest(name="nope")), "NOT_FOUND"),
            (
                oip.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="mlp")),
                "NOT_FOUND",
            ),
            (oip.RepositoryModelLoad(pb.RepositoryModelLoadRequest()), "INVALID_ARGUMENT"),
            (
                oip.RepositoryModelLoad(
                    pb.RepositoryModelLoadRequest(
                        model_name="mlp",
                        parameters={"config": pb.ModelRepositoryParameter(string_param="{}")},
                    )
                ),
                "INVALID_ARGUMENT",
            ),
        ]
        for call, code in failures:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code().name == code, info.value.details()


async def test_load_and_unload_need_admin(start_inference: StartInference, tmp_path: Path) -> None:
    source = MemorySource()
    source.add("mlp", 1, mlp_model(1))
    app = await start_inference(
        source=source,
        auth=AuthSettings(tokens="r:reader,a:admin"),
    )
    reader = [("authorization", "Bearer r")]
    admin = [("authorization", "Bearer a")]
    async with grpc.aio.insecure_channel(app.address) as channel:
        oip = pb_grpc.GRPCInferenceServiceStub(channel)
        load = pb.RepositoryModelLoadRequest(model_name="mlp")
        unload = pb.RepositoryModelUnloadRequest(model_name="mlp")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await oip.RepositoryModelLoad(load, metadata=reader)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await oip.RepositoryModelLoad(load, metadata=admin)
        await oip.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=reader)
        await oip.ModelStatistics(pb.ModelStatisticsRequest(), metadata=reader)
        await oip.ModelConfig(pb.ModelConfigRequest(name="mlp"), metadata=reader)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await oip.RepositoryModelUnload(unload, metadata=reader)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await oip.RepositoryModelUnload(unload, metadata=admin)


async def test_unload_refuses_deployed_versions(
    start_inference: StartInference, tmp_path: Path
) -> None:
    # A directory source deploys every model: its versions are kept loaded.
    models = write_models(tmp_path / "models", {"mlp": mlp_model(1)})
    app = await start_inference(model_source="directory", model_dir=str(models))
    async with grpc.aio.insecure_channel(app.address) as channel:
        oip = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await oip.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="mlp"))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "deployment" in (info.value.details() or "")
        assert _index(await oip.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))) == [
            ("mlp", "1", "READY")
        ]
