"""A refused request leaves nothing of its data behind: gRPC keeps the exception of a call
for a while, so the exception must not reach the request or its tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from modelhub.common.errors import ModelHubError, PayloadTooLargeError
from modelhub.inference.api import InferenceServicer
from modelhub.inference.metrics import InferenceMetrics
from tests.service.inference.oip import infer_request


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> None:
        return None


def _held(exc: BaseException) -> list[tuple[str, str, Any]]:
    """(function, local name, value) for every local of every ModelHub frame the exception
    (and the exceptions it chains to) keeps alive (not this test's own frame)."""
    held = []
    seen: BaseException | None = exc
    while seen is not None:
        tb = seen.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if "/modelhub/" in frame.f_code.co_filename:
                held += [(frame.f_code.co_name, k, v) for k, v in frame.f_locals.items()]
            tb = tb.tb_next
        seen = seen.__cause__ or seen.__context__
    return held


async def test_a_payload_too_large_keeps_no_reference_to_the_request() -> None:
    servicer = InferenceServicer(
        None,  # type: ignore[arg-type]  # refused before the service is asked
        InferenceMetrics(CollectorRegistry()),
        max_request_bytes=1024,
    )
    request = infer_request("mlp", {"x": np.zeros((1000, 8), np.float32)})
    with pytest.raises(PayloadTooLargeError) as caught:
        await servicer.ModelInfer(request, _Context())  # type: ignore[arg-type]
    held = _held(caught.value)
    assert [name for name, _, _ in held if name == "infer_request"] == []  # convert's copies
    for function, name, value in held:
        assert value is not request, (function, name)
        assert not (isinstance(value, bytes | np.ndarray) and len(value) > 1024), (function, name)
        assert not isinstance(value, list) or not any(
            isinstance(item, bytes) and len(item) > 1024 for item in value
        ), (function, name)
    assert isinstance(caught.value, ModelHubError) and caught.value.reason == "PAYLOAD_TOO_LARGE"
