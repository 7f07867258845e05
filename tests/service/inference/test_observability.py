"""Prometheus metrics in the runtime's registry, and traces: a span per request and a span
per batch run linked to the requests it served."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.service.inference.conftest import StartInference, stubs, write_models
from tests.service.inference.oip import infer_request
from tests.unit.inference.helpers import RunGate, mlp_model


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


async def test_prometheus_metrics(
    start_inference: StartInference, channel_to, tmp_path: Path
) -> None:
    models = write_models(tmp_path / "models", {"mlp": mlp_model(1)})
    app = await start_inference(model_source="directory", model_dir=str(models))
    stub, _ = stubs(channel_to(app))
    x = np.ones((2, 8), np.float32)
    for _ in range(3):
        await stub.ModelInfer(infer_request("mlp", {"x": x}))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ModelInfer(infer_request("mlp", {"x": np.ones((2, 3), np.float32)}))
    body = await asyncio.to_thread(_scrape, app.runtime.metrics_port)
    labels = 'model="mlp",version="1"'
    direct = 'model="mlp",variant="",version="1"'
    assert f'modelhub_inference_request_duration_seconds_count{{code="OK",{direct}}} 3.0' in body
    assert (
        f'modelhub_inference_request_duration_seconds_count{{code="INVALID_ARGUMENT",{direct}}} 1.0'
        in body
    )
    assert f"modelhub_inference_queue_duration_seconds_count{{{labels}}} 3.0" in body
    assert f"modelhub_inference_compute_duration_seconds_count{{{labels}}}" in body
    assert f'modelhub_inference_batch_size_bucket{{le="2.0",{labels}}}' in body
    assert f"modelhub_inference_queue_depth{{{labels}}} 0.0" in body
    assert "modelhub_inference_loaded_versions 1.0" in body
    assert 'modelhub_inference_model_loads_total{model="mlp",outcome="ready"} 1.0' in body


async def test_batch_span_links_to_request_spans(
    start_inference: StartInference, channel_to, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    models = write_models(tmp_path / "models", {"mlp": mlp_model(1)})
    gate = RunGate(models=["mlp"])
    app = await start_inference(
        model_source="directory",
        model_dir=str(models),
        tracer_provider=provider,
        trace_all=True,
        run_hook=gate,
        inline_compute_us=0,
    )
    stub, _ = stubs(channel_to(app))
    gate.entered.clear()
    gate.close()
    x = np.ones((1, 8), np.float32)
    first = asyncio.ensure_future(stub.ModelInfer(infer_request("mlp", {"x": x})))
    await asyncio.to_thread(gate.entered.wait, 10)
    rest = [
        asyncio.ensure_future(stub.ModelInfer(infer_request("mlp", {"x": x}))) for _ in range(3)
    ]
    while app.service.statistics("mlp")[0].batcher.depth < 3:
        await asyncio.sleep(0.01)
    gate.open()
    await asyncio.gather(first, *rest)

    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.name.endswith("/ModelInfer")]
    batches = [s for s in spans if s.name == "inference.batch"]
    assert len(requests) == 4
    assert [b.attributes["modelhub.batch.requests"] for b in batches[-2:]] == [1, 3]
    linked = {link.context.span_id for b in batches[-2:] for link in b.links}
    assert linked == {r.context.span_id for r in requests}
    assert all(r.attributes["modelhub.model"] == "mlp" for r in requests)
