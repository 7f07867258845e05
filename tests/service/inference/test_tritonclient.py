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
from tests.unit.inference.helpers import double_model, mlp_model

SCRIPT = Path(__file__).with_name("triton_client_script.py")


async def _tritonclient(*args: str) -> dict:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
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
