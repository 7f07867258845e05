"""The data-plane contract (docs/data-plane.md): inference honours the routing headers
Envoy sets — target override, fallback on Envoy's retry, shadow copies at background
priority — and names what served a request once, in parameters and trailers."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from tests.service.inference.conftest import StartInference, stubs
from tests.service.inference.oip import infer_request
from tests.unit.inference.helpers import RunGate, mlp_model

ROUTED = (
    ("x-modelhub-endpoint", "endpoints/shop"),
    ("x-modelhub-variant", "challenger"),
    ("x-modelhub-target", "fraud:2"),
    ("x-envoy-attempt-count", "1"),
    ("x-request-id", "req-1"),
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "fraud").mkdir(parents=True)
    (root / "fraud" / "1.onnx").write_bytes(mlp_model(1))
    (root / "fraud" / "2.onnx").write_bytes(mlp_model(2))
    return root


def _params(response: pb.ModelInferResponse) -> dict[str, str]:
    return {k: v.string_param for k, v in response.parameters.items() if k.startswith("modelhub.")}


def _x() -> np.ndarray:
    return np.ones((2, 8), np.float32)


def _one() -> np.ndarray:
    return np.ones((1, 8), np.float32)


async def test_target_header_overrides_the_body(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    request = infer_request("shop", {"x": _x()}, version="1")
    request.parameters["modelhub.variant"].string_param = "forged"
    call = stub.ModelInfer(request, metadata=ROUTED)
    response = await call
    assert (response.model_name, response.model_version) == ("fraud", "2")
    assert _params(response) == {
        "modelhub.endpoint": "endpoints/shop",
        "modelhub.variant": "challenger",
        "modelhub.model": "models/fraud",
        "modelhub.version": "2",
    }
    wire = response.SerializeToString()
    for name in (b"modelhub.endpoint", b"modelhub.variant", b"modelhub.model", b"modelhub.version"):
        assert wire.count(name) == 1
    trailers = dict(await call.trailing_metadata())
    assert {k: v for k, v in trailers.items() if k.startswith("modelhub-")} == {
        "modelhub-endpoint": "endpoints/shop",
        "modelhub-variant": "challenger",
        "modelhub-model": "models/fraud",
        "modelhub-version": "2",
    }


async def test_fallback_on_envoys_retry(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    headers = (*ROUTED[:3], ("x-modelhub-fallback", "safe=fraud:1"))
    first = await stub.ModelInfer(
        infer_request("shop", {"x": _x()}), metadata=(*headers, ("x-envoy-attempt-count", "1"))
    )
    assert first.model_version == "2" and _params(first)["modelhub.variant"] == "challenger"
    retry = await stub.ModelInfer(
        infer_request("shop", {"x": _x()}), metadata=(*headers, ("x-envoy-attempt-count", "2"))
    )
    assert retry.model_version == "1"
    assert _params(retry)["modelhub.variant"] == "safe"
    assert _params(retry)["modelhub.endpoint"] == "endpoints/shop"


async def test_model_names_without_routing(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    response = await stub.ModelInfer(infer_request("models/fraud", {"x": _x()}))
    assert response.model_version == "2"  # the newest version (no champion alias here)
    assert _params(response) == {"modelhub.model": "models/fraud", "modelhub.version": "2"}
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.ModelInfer(infer_request("endpoints/shop", {"x": _x()}))
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no endpoint or model named 'endpoints/shop'" in (failed.value.details() or "")


async def test_model_ready_and_metadata_follow_the_target(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    target = (("x-modelhub-target", "fraud:1"),)
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="shop"), metadata=target)).ready
    await stub.ModelInfer(infer_request("fraud", {"x": _x()}, version="1"))
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="shop"), metadata=target)).ready
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="shop"))).ready
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="shop"), metadata=target)
    assert metadata.name == "shop" and "1" in metadata.versions
    assert [t.name for t in metadata.inputs] == ["x"]


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


async def test_variant_label_only_from_the_endpoint_headers(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    app = await start_inference(model_source="directory", model_dir=str(model_dir))
    stub, _ = stubs(channel_to(app))
    forged = infer_request("fraud", {"x": _x()}, version="1")
    forged.parameters["modelhub.variant"].string_param = "forged"
    await stub.ModelInfer(forged)
    # A variant header without an endpoint (a client's own) makes no label either.
    await stub.ModelInfer(
        infer_request("fraud", {"x": _x()}, version="1"),
        metadata=(("x-modelhub-variant", "mine"),),
    )
    await stub.ModelInfer(infer_request("shop", {"x": _x()}), metadata=ROUTED)
    body = await asyncio.to_thread(_scrape, app.runtime.metrics_port)
    name = "modelhub_inference_request_duration_seconds_count"
    assert f'{name}{{code="OK",model="fraud",variant="",version="1"}} 2.0' in body
    assert f'{name}{{code="OK",model="fraud",variant="challenger",version="2"}} 1.0' in body
    assert "forged" not in body and '"mine"' not in body


async def test_shadow_copies_run_after_waiting_requests(
    start_inference: StartInference, channel_to, model_dir: Path
) -> None:
    gate = RunGate(models=["fraud"])
    app = await start_inference(
        model_source="directory",
        model_dir=str(model_dir),
        run_hook=gate,
        inline_compute_us=0,
        max_batch_size=1,
    )
    stub, _ = stubs(channel_to(app))
    await stub.ModelInfer(infer_request("fraud", {"x": _one()}, version="2"))  # loaded
    gate.entered.clear()
    gate.close()
    first = asyncio.ensure_future(stub.ModelInfer(infer_request("fraud", {"x": _one()})))
    await asyncio.to_thread(gate.entered.wait, 10)
    done: list[str] = []
    shadow_headers = (*ROUTED, ("x-modelhub-shadow", "1"))
    shadow = asyncio.ensure_future(
        stub.ModelInfer(infer_request("shop", {"x": _one()}), metadata=shadow_headers)
    )
    shadow.add_done_callback(lambda _: done.append("shadow"))
    while app.service.statistics("fraud", "2")[0].batcher.depth < 1:
        await asyncio.sleep(0.01)
    primary = asyncio.ensure_future(stub.ModelInfer(infer_request("fraud", {"x": _one()})))
    primary.add_done_callback(lambda _: done.append("primary"))
    while app.service.statistics("fraud", "2")[0].batcher.depth < 2:
        await asyncio.sleep(0.01)
    gate.open()
    await asyncio.gather(first, shadow, primary)
    assert done == ["primary", "shadow"]
