"""Open Inference Protocol strictness at the server: requests the protocol forbids, absurd
shapes and bytes that are no ModelInferRequest at all are INVALID_ARGUMENT (never INTERNAL
or UNKNOWN), and the server keeps serving."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.inference.main import InferenceApp
from tests.service.inference.conftest import StartInference, stubs, write_models
from tests.service.inference.oip import infer_request, outputs_of
from tests.unit.inference.helpers import mlp_model

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture
async def app(start_inference: StartInference, tmp_path: Path) -> InferenceApp:
    model_dir = write_models(tmp_path / "models", {"mlp": mlp_model(3)})
    return await start_inference(
        model_source="directory", model_dir=str(model_dir), max_request_bytes=4096
    )


def _x(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 8)).astype(np.float32)


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


async def test_typed_and_raw_contents_together_are_refused(app: InferenceApp, channel_to) -> None:
    stub, _ = stubs(channel_to(app))
    request = infer_request("mlp", {"x": _x(1)})
    request.inputs[0].contents.fp32_contents.extend([0.0] * 8)
    error = await _refused(stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not both" in (error.details() or "")
    ok = await stub.ModelInfer(infer_request("mlp", {"x": _x(1)}))
    assert outputs_of(ok)["y"].shape == (1, 4)


@pytest.mark.parametrize(
    "shape",
    [[0, 2**62], [0, 2**63 - 1], [2**62, 2**62], [-1, 8], [-(2**63), 8], [0, 1 << 40], [1] * 70],
    ids=str,
)
async def test_absurd_shapes_are_invalid_arguments(
    app: InferenceApp, channel_to, shape: list[int]
) -> None:
    stub, _ = stubs(channel_to(app))
    for typed in (False, True):
        request = pb.ModelInferRequest(model_name="mlp")
        request.inputs.add(name="x", datatype="FP32", shape=shape)
        if not typed:
            request.raw_input_contents.append(b"")
        error = await _refused(stub.ModelInfer(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (typed, error.details())
        info = error_info(dict(error.trailing_metadata())[STATUS_DETAILS_KEY])
        assert info is not None
        assert info.reason == "INVALID_ARGUMENT"
    ok = await stub.ModelInfer(infer_request("mlp", {"x": _x(2)}))
    assert outputs_of(ok)["y"].shape == (2, 4)


async def test_bytes_that_are_no_model_infer_request(app: InferenceApp, channel_to) -> None:
    """Field 1 (model_name) declared 5 bytes long with 2 present: protobuf cannot parse it."""
    channel = channel_to(app)
    raw_call = channel.unary_unary(MODEL_INFER)  # bytes in, bytes out
    for payload in (b"\x0a\x05fr", b"\xff\xff\xff", b"\x3a\x80"):
        error = await _refused(raw_call(payload))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "not a valid inference.ModelInferRequest" in (error.details() or "")
        info = error_info(dict(error.trailing_metadata())[STATUS_DETAILS_KEY])
        assert info is not None
        assert info.reason == "MALFORMED_MESSAGE"
    # A valid message sent the same way is served.
    answer = await raw_call(infer_request("mlp", {"x": _x(1)}).SerializeToString())
    assert outputs_of(pb.ModelInferResponse.FromString(answer))["y"].shape == (1, 4)
