"""Reporting served requests to the monitor: one event per request, queued on the shared
`EventPipeline` (bounded, never blocking; sent in the background).

Every request that reached a model version is reported, errors included, direct calls
too (endpoint empty). A fraction (`sample_rate`) carries the first row of the first input
and output for drift detection; mirrored primaries and shadow copies always carry the
first output row (`outputs`), which the monitor compares after joining the two halves by
request id.
"""

from __future__ import annotations

import random

import numpy as np

from modelhub.common.events import MAX_OUTPUTS, Event, EventPipeline
from modelhub.inference.routing import Route


def first_row(array: np.ndarray, limit: int) -> list[float]:
    """The first row of `array`, flattened, as floats (at most `limit`; [] when not
    numeric)."""
    if array.dtype.kind not in "biuf" or array.size == 0:
        return []
    row = array[0] if array.ndim > 1 else array
    return np.asarray(row, dtype=np.float64).ravel()[:limit].tolist()  # type: ignore[no-any-return]


def _named(values: list[float], prefix: str) -> list[tuple[str, float]]:
    return [(f"{prefix}[{i}]", v) for i, v in enumerate(values)]


class RequestReporter:
    """Builds the event of each request and hands it to the pipeline."""

    def __init__(
        self,
        pipeline: EventPipeline,
        *,
        sample_rate: float,
        max_values: int,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sample_rate = sample_rate
        self.max_values = max_values
        self._random = (rng or random.Random()).random

    def report(
        self,
        route: Route,
        request_id: str,
        arrival: float,
        latency_s: float,
        model: str,
        version: int,
        status_code: int,
        inputs: np.ndarray | None = None,
        outputs: np.ndarray | None = None,
        traceparent: str = "",
    ) -> None:
        """Queue the event of one request (`arrival` in epoch seconds)."""
        event = Event(
            request_id=request_id or route.request_id,
            time=arrival,
            endpoint=route.endpoint,
            variant=route.variant if route.routed or route.shadow else "",
            model=model,
            version=version,
            latency_s=latency_s,
            status_code=status_code,
            key_hash=route.key_hash,
            traceparent=traceparent,
            shadow=route.shadow,
            mirrored=route.mirrored and not route.shadow,
        )
        if inputs is not None:
            event.rows = int(inputs.shape[0]) if inputs.ndim else 1
        if outputs is not None:
            if event.shadow or event.mirrored:
                event.outputs = first_row(outputs, MAX_OUTPUTS)
            if self.sample_rate > 0 and self._random() < self.sample_rate:
                limit = self.max_values
                event.predictions = _named(first_row(outputs, limit), "output")
                if inputs is not None:
                    event.features = _named(first_row(inputs, limit), "input")
        self.pipeline.emit(event)
