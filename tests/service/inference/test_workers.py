"""`workers`: several server processes sharing one port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.service.inference.conftest import write_models
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import double_model


async def _start_two_workers(tmp_path: Path, ready: Path) -> asyncio.subprocess.Process:
    """`python -m modelhub.inference` with two workers serving a model directory; `ready`
    appears once both serve."""
    models = write_models(tmp_path / "models", {"double": double_model("FP32")})
    env = {
        **os.environ,
        "MODELHUB_INFERENCE_WORKERS": "2",
        "MODELHUB_INFERENCE_PORT": "0",
        "MODELHUB_INFERENCE_METRICS_PORT": "-1",
        "MODELHUB_INFERENCE_MODEL_SOURCE": "directory",
        "MODELHUB_INFERENCE_MODEL_DIR": str(models),
        "MODELHUB_INFERENCE_CACHE_DIR": str(tmp_path / "cache"),
        "MODELHUB_INFERENCE_READY_FILE": str(ready),
        "MODELHUB_INFERENCE_DEVICE": "cpu",
        "MODELHUB_LOG_FORMAT": "text",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelhub.inference", env=env, stderr=asyncio.subprocess.DEVNULL
    )


async def test_two_workers_share_one_port(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = await _start_two_workers(tmp_path, ready)
    try:
        async with asyncio.timeout(60):
            while not ready.exists():
                assert process.returncode is None
                await asyncio.sleep(0.05)
        info = json.loads(ready.read_text())
        assert len(info["workers"]) == 2
        pids = {w["pid"] for w in info["workers"]}
        assert len(pids) == 2 and process.pid not in pids
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        for index in range(8):  # separate connections, spread over the workers
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{info['port']}", options=[("grpc.channel_id", index)]
            ) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                answer = await stub.ModelInfer(infer_request("double", {"x": x}), timeout=20)
                np.testing.assert_array_equal(outputs_of(answer)["y"], x * 2)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0


async def test_a_worker_that_dies_stops_the_others_and_the_exit_status_says_so(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready.json"
    process = await _start_two_workers(tmp_path, ready)
    try:
        async with asyncio.timeout(60):
            while not ready.exists():
                assert process.returncode is None
                await asyncio.sleep(0.05)
        first, second = (w["pid"] for w in json.loads(ready.read_text())["workers"])
        os.kill(first, signal.SIGKILL)
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # The process manager sees the failure (a shell's 128 + SIGKILL), and the other worker
    # was stopped, not left serving on the port.
    assert code == 128 + signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
