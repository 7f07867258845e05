"""A burst of bad requests interleaved with good ones: each bad one gets its exact status
code, every good one its correct answer, and the server keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from tests.service.inference.conftest import StartInference, stubs, write_models
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import mlp_model

MAX_BATCH = 8
MAX_BYTES = 4096


def _x(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 8)).astype(np.float32)


def _bad_requests() -> list[tuple[str, pb.ModelInferRequest, grpc.StatusCode, str]]:
    """(what, request, expected code, expected ErrorInfo reason)."""
    wrong_length = infer_request("mlp", {"x": _x(2)})
    wrong_length.raw_input_contents[0] = wrong_length.raw_input_contents[0][:-4]
    missing = infer_request("mlp", {"x": _x(1)})
    del missing.inputs[:]
    del missing.raw_input_contents[:]
    missing.inputs.add(name="other", datatype="FP32", shape=[1, 8])
    missing_input = infer_request("mlp", {"x": _x(1)})
    missing_input.inputs[0].name = "y"  # unknown name, and "x" is then missing
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return [
        (
            "wrong dtype",
            infer_request("mlp", {"x": _x(2).astype(np.float64)}),
            invalid,
            "INVALID_ARGUMENT",
        ),
        (
            "wrong shape",
            infer_request("mlp", {"x": np.zeros((2, 7), np.float32)}),
            invalid,
            "INVALID_ARGUMENT",
        ),
        ("byte length", wrong_length, invalid, "INVALID_ARGUMENT"),
        ("unknown input", missing, invalid, "INVALID_ARGUMENT"),
        ("missing input", missing_input, invalid, "INVALID_ARGUMENT"),
        (
            "unknown model",
            infer_request("nope", {"x": _x(1)}),
            grpc.StatusCode.NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "unknown version",
            infer_request("mlp", {"x": _x(1)}, version="42"),
            grpc.StatusCode.NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            # A digit to str.isdigit(), not to int(): INTERNAL before (found by tests/fuzz).
            "version not a number",
            infer_request("mlp", {"x": _x(1)}, version="²"),
            invalid,
            "INVALID_ARGUMENT",
        ),
        (
            "zero rows",
            infer_request("mlp", {"x": np.zeros((0, 8), np.float32)}),
            invalid,
            "INVALID_ARGUMENT",
        ),
        (
            "too many rows",
            infer_request("mlp", {"x": _x(MAX_BATCH + 1)}),
            invalid,
            "INVALID_ARGUMENT",
        ),
        (
            "payload too large",
            infer_request("mlp", {"x": _x(MAX_BATCH * 20)}),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "unknown output",
            infer_request("mlp", {"x": _x(1)}, outputs=["z"]),
            invalid,
            "INVALID_ARGUMENT",
        ),
    ]


async def test_burst_of_bad_requests_among_good_ones(
    start_inference: StartInference, channel_to, tmp_path: Path
) -> None:
    model_dir = write_models(tmp_path / "models", {"mlp": mlp_model(3)})
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        max_batch_size=MAX_BATCH,
        max_request_bytes=MAX_BYTES,
    )
    stub, _ = stubs(channel_to(app))
    session = ort.InferenceSession(mlp_model(3), providers=["CPUExecutionProvider"])
    bad = _bad_requests() * 3
    good = [_x(1 + i % MAX_BATCH) for i in range(len(bad))]

    async def call(request: pb.ModelInferRequest) -> pb.ModelInferResponse | grpc.aio.AioRpcError:
        try:
            return await stub.ModelInfer(request)
        except grpc.aio.AioRpcError as exc:
            return exc

    calls = []
    for (_, request, _, _), x in zip(bad, good, strict=True):
        calls.append(call(request))
        calls.append(call(infer_request("mlp", {"x": x})))
    results = await asyncio.gather(*calls)

    for index, (what, _, code, reason) in enumerate(bad):
        result = results[2 * index]
        assert isinstance(result, grpc.aio.AioRpcError), what
        assert result.code() == code, (what, result.details())
        info = error_info(dict(result.trailing_metadata())[STATUS_DETAILS_KEY])
        assert info is not None
        assert info.reason == reason, what
    for index, x in enumerate(good):
        result = results[2 * index + 1]
        assert isinstance(result, pb.ModelInferResponse), result
        (expected,) = session.run(None, {"x": x})
        np.testing.assert_allclose(outputs_of(result)["y"], expected, rtol=1e-5, atol=1e-5)

    # Still serving.
    after = await stub.ModelInfer(infer_request("mlp", {"x": _x(3)}))
    assert outputs_of(after)["y"].shape == (3, 4)
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready


async def test_load_and_unload_refuse_a_version_that_is_not_a_number(
    start_inference: StartInference, channel_to, tmp_path: Path
) -> None:
    # "²" is a digit to str.isdigit(), not to int(): INTERNAL before (found by tests/fuzz).
    model_dir = write_models(tmp_path / "models", {"mlp": mlp_model(3)})
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    _, repository = stubs(channel_to(app))
    for call in (
        repository.LoadModel(ipb.LoadModelRequest(model="mlp", version="²")),
        repository.UnloadModel(ipb.UnloadModelRequest(model="mlp", version="²")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
