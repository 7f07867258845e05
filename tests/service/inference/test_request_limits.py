"""Limits that protect inference from what clients send: gRPC refuses a message larger than
the request size limit (plus its envelope) before assembling it; a request carrying more
tensor data than the limit is refused with PAYLOAD_TOO_LARGE; and variant labels from
request headers cannot grow the metrics without bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelhub.common.status import STATUS_DETAILS_KEY, error_info
from modelhub.inference.metrics import OTHER_VARIANT
from modelhub.inference.settings import REQUEST_ENVELOPE_BYTES, InferenceSettings
from tests.service.inference.conftest import StartInference, stubs, write_models
from tests.service.inference.oip import infer_request
from tests.unit.inference.helpers import mlp_model

LIMIT = 64 << 10


def test_the_receive_limit_is_the_request_limit_plus_its_envelope() -> None:
    settings = InferenceSettings(max_request_bytes=LIMIT)
    assert settings.max_receive_bytes() == LIMIT + REQUEST_ENVELOPE_BYTES
    # Never more than the message limit.
    small = InferenceSettings(max_request_bytes=LIMIT, max_message_bytes=LIMIT)
    assert small.max_receive_bytes() == LIMIT


async def test_a_message_over_the_receive_limit_is_refused_by_grpc(
    start_inference: StartInference, channel_to, tmp_path: Path
) -> None:
    models = write_models(tmp_path / "models", {"mlp": mlp_model(1)})
    app = await start_inference(
        model_source="directory", model_dir=str(models), max_request_bytes=LIMIT
    )
    stub, _ = stubs(channel_to(app))
    rows = (LIMIT + REQUEST_ENVELOPE_BYTES) // 32 + 1  # 8 float32 per row
    huge = infer_request("mlp", {"x": np.zeros((rows, 8), np.float32)})
    assert huge.ByteSize() > app.settings.max_receive_bytes()

    async def refused(request: object) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelInfer(request)
        return caught.value

    errors = await asyncio.gather(*(refused(huge) for _ in range(4)))
    for error in errors:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = error.details() or ""
        assert "Received message larger than max" in details, details
        assert f"vs. {app.settings.max_receive_bytes()}" in details, details

    # Over the tensor limit, within the envelope: assembled, then refused by the domain.
    over = infer_request("mlp", {"x": np.zeros((LIMIT // 32 + 1, 8), np.float32)})
    error = await refused(over)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(dict(error.trailing_metadata())[STATUS_DETAILS_KEY])
    assert info is not None and info.reason == "PAYLOAD_TOO_LARGE"
    assert f"the limit is {LIMIT}" in (error.details() or "")

    # Still serving.
    answer = await stub.ModelInfer(infer_request("mlp", {"x": np.ones((2, 8), np.float32)}))
    assert answer.model_name == "mlp"


def _variant_series(app: object) -> set[tuple[str, ...]]:
    series = set()
    for family in app.runtime.metrics_registry.collect():  # type: ignore[attr-defined]
        if family.name != "modelhub_inference_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                series.add(tuple(sorted(sample.labels.items())))
    return series


async def test_variant_headers_cannot_grow_the_metrics(
    start_inference: StartInference, channel_to, tmp_path: Path
) -> None:
    models = write_models(tmp_path / "models", {"mlp": mlp_model(1)})
    app = await start_inference(model_source="directory", model_dir=str(models))
    cap = app.metrics.variants.cap
    stub, _ = stubs(channel_to(app))
    request = infer_request("mlp", {"x": np.ones((1, 8), np.float32)})
    distinct = cap + 300

    async def call(i: int) -> None:
        headers = (("x-modelhub-endpoint", "shop"), ("x-modelhub-variant", f"v{i}"))
        await stub.ModelInfer(request, metadata=headers)

    for start in range(0, distinct, 100):
        await asyncio.gather(*(call(i) for i in range(start, min(distinct, start + 100))))
    # A value that is no valid variant name never labels a series.
    await stub.ModelInfer(
        request, metadata=(("x-modelhub-endpoint", "shop"), ("x-modelhub-variant", "Bad Name!"))
    )

    series = _variant_series(app)
    variants = {dict(labels)["variant"] for labels in series}
    assert len(series) == cap + 1
    assert OTHER_VARIANT in variants and "v0" in variants and "Bad Name!" not in variants
    overflow = app.runtime.metrics_registry.get_sample_value
    assert overflow(
        "modelhub_inference_label_overflow_total", {"label": "variant", "reason": "cap"}
    ) == float(distinct - cap)
    assert (
        overflow(
            "modelhub_inference_label_overflow_total", {"label": "variant", "reason": "invalid"}
        )
        == 1.0
    )
