"""tritonclient.grpc works unchanged against the inference service (run in a subprocess:
its protobuf symbols collide with ModelHub's in one process)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.service.inference.conftest import StartInference, write_models
from tests.unit.inference.helpers import MemorySource, double_model, mlp_model

SCRIPT = Path(__file__).with_name("triton_client_script.py")
REPOSITORY_SCRIPT = Path(__file__).with_name("triton_repository_script.py")


async def _tritonclient(*args: str) -> dict:
    return await run_script(SCRIPT, *args)


async def run_script(script: Path, *args: str) -> dict:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


@pytest.mark.parametrize(
    ("model", "data", "datatype", "width"),
    [
        ("mlp", mlp_model(4), "FP32", 8),
        ("double-int64", double_model("INT64"), "INT64", 3),
        ("double-fp16", double_model("FP16"), "FP16", 3),
    ],
    ids=["mlp-fp32", "int64", "fp16"],
)
async def test_tritonclient_live_metadata_and_infer(
    start_inference: StartInference,
    tmp_path: Path,
    model: str,
    data: bytes,
    datatype: str,
    width: int,
) -> None:
    models = write_models(tmp_path / "models", {model: data})
    app = await start_inference(model_source="directory", model_dir=str(models), priority_levels=2)
    got = await _tritonclient(app.address, model, datatype, "3", str(width))
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["metadata"]["name"] == model
    assert got["metadata"]["inputs"] == [
        {"name": "x", "datatype": datatype, "shape": ["-1", str(width)]}
    ]
    assert got["id"] == "triton-1"
    assert got["model_version"] == "1"
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.array(got["x"], dtype=got["y_dtype"])
    (expected,) = session.run(None, {"x": x})
    np.testing.assert_allclose(np.array(got["y"], dtype=got["y_dtype"]), expected, rtol=1e-6)


async def test_tritonclient_repository_statistics_and_config(
    start_inference: StartInference,
) -> None:
    source = MemorySource()
    source.add("mlp", 1, mlp_model(2))
    app = await start_inference(source=source, max_batch_size=32, max_queue_delay_us=250)
    got = await run_script(REPOSITORY_SCRIPT, app.address, "mlp")
    assert got["before"] == {}
    assert got["loaded"]["models"] == [{"name": "mlp", "version": "1", "state": "READY"}]
    config = got["config"]["config"]
    assert config["name"] == "mlp" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": ["8"]}]
    assert config["output"][0]["data_type"] == "TYPE_FP32"
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "250"
    assert config["instance_group"][0]["count"] == 1
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    (stats,) = got["statistics"]["model_stats"]
    assert (stats["name"], stats["version"]) == ("mlp", "1")
    assert stats["inference_count"] == "2" and stats["execution_count"] == "1"
    assert stats["inference_stats"]["success"]["count"] == "1"
    assert int(stats["last_inference"]) > 0
    assert stats["batch_stats"][0]["batch_size"] == "2"
    assert got["after"] == {}
    assert got["missing"] == "StatusCode.NOT_FOUND"
