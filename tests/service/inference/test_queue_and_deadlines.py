"""Back-pressure and deadlines, with a deliberately slow model (its runs are held back by
a gate the test opens): a full queue refuses at once; a request whose deadline passes
while queued is never computed; one slow model does not delay another."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.inference.v1 import inference_pb2 as ipb
from tests.service.inference.conftest import StartInference, stubs, write_models
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import RunGate, double_model, mlp_model

MARK = 12345.0  # a value only the doomed request carries


def _x(value: float = 1.0) -> np.ndarray:
    return np.full((1, 8), value, np.float32)


async def _queued(repository, model: str, depth: int) -> None:  # type: ignore[no-untyped-def]
    while True:
        stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model=model))
        if stats.model_stats[0].queue_depth >= depth:
            return
        await asyncio.sleep(0.01)


@pytest.fixture
async def slow(start_inference: StartInference, channel_to, tmp_path: Path):  # type: ignore[no-untyped-def]
    models = write_models(tmp_path / "models", {"slow": mlp_model(1), "fast": double_model("FP32")})
    gate = RunGate(models=["slow"])
    app = await start_inference(
        model_source="directory",
        model_dir=str(models),
        run_hook=gate,
        max_batch_size=1,
        max_queue_size=3,
        # The gate makes runs slow in a way no measurement predicts: keep them off the
        # event loop (a model measured slow would run on its thread anyway).
        inline_compute_us=0,
    )
    gate.runs.clear()  # forget the warm-up runs
    gate.entered.clear()
    gate.close()
    stub, repository = stubs(channel_to(app))
    yield stub, repository, gate
    gate.open()


async def test_full_queue_answers_resource_exhausted_at_once(slow) -> None:  # type: ignore[no-untyped-def]
    stub, repository, gate = slow
    running = asyncio.ensure_future(stub.ModelInfer(infer_request("slow", {"x": _x()})))
    await asyncio.to_thread(gate.entered.wait, 10)
    queued = [
        asyncio.ensure_future(stub.ModelInfer(infer_request("slow", {"x": _x()}))) for _ in range(3)
    ]
    await _queued(repository, "slow", 3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(infer_request("slow", {"x": _x()}))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "full" in (err.value.details() or "")
    assert len(gate.runs) == 1  # refused while the first run is still held
    gate.open()
    for answer in await asyncio.gather(running, *queued):
        assert outputs_of(answer)["y"].shape == (1, 4)
    stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model="slow"))
    assert stats.model_stats[0].rejected_count == 1


@pytest.mark.parametrize("how", ["grpc-deadline", "timeout-parameter"])
async def test_request_expiring_in_the_queue_is_never_computed(slow, how: str) -> None:  # type: ignore[no-untyped-def]
    stub, repository, gate = slow
    running = asyncio.ensure_future(stub.ModelInfer(infer_request("slow", {"x": _x()})))
    await asyncio.to_thread(gate.entered.wait, 10)
    doomed = infer_request("slow", {"x": _x(MARK)})
    if how == "grpc-deadline":
        call = stub.ModelInfer(doomed, timeout=0.3)
    else:
        doomed.parameters["timeout"].int64_param = 300_000  # µs, answered by the server
        call = stub.ModelInfer(doomed)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(gate.runs) == 1  # the slow run still holds
    gate.open()
    await running
    await stub.ModelInfer(infer_request("slow", {"x": _x(2.0)}))
    assert all(MARK not in feeds["x"] for _, feeds in gate.runs)
    stats = await repository.GetModelStatistics(ipb.GetModelStatisticsRequest(model="slow"))
    assert stats.model_stats[0].inference_count == 2


async def test_a_slow_model_does_not_delay_another(slow) -> None:  # type: ignore[no-untyped-def]
    stub, _, gate = slow
    blocked = [
        asyncio.ensure_future(stub.ModelInfer(infer_request("slow", {"x": _x()}))) for _ in range(3)
    ]
    await asyncio.to_thread(gate.entered.wait, 10)
    x = np.arange(3, dtype=np.float32).reshape(1, 3)
    for _ in range(20):
        answer = await stub.ModelInfer(infer_request("fast", {"x": x}), timeout=10)
        np.testing.assert_array_equal(outputs_of(answer)["y"], x * 2)
    assert not any(call.done() for call in blocked)
    gate.open()
    await asyncio.gather(*blocked)
