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
    # Cut before converting: only `limit` values are ever copied.
    return row.ravel()[:limit].astype(np.float64).tolist()  # type: ignore[no-any-return]


class _Names:
    """`prefix[0]`, `prefix[1]`, …: formatted once, not for every sampled event."""

    def __init__(self, prefix: str, count: int) -> None:
        self.names = tuple(f"{prefix}[{i}]" for i in range(count))

    def pair(self, values: list[float]) -> list[tuple[str, float]]:
        return list(zip(self.names, values, strict=False))


class RequestReporter:
    """Builds the event of each request and hands it to the pipeline.

    This runs on every request, so it does the least it can: one event object, and numpy
    work only for the events that carry values (sampled ones, shadow copies and mirrored
    primaries); the protobuf is built later, in bulk, by the pipeline's sender task."""

    def __init__(
        self,
        pipeline: EventPipeline[Event],
        *,
        sample_rate: float,
        max_values: int,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sample_rate = sample_rate
        self.max_values = max_values
        self._random = (rng or random.Random()).random
        self._inputs = _Names("input", max_values)
        self._outputs = _Names("output", max_values)

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
        shadow = route.shadow
        mirrored = route.mirrored and not shadow
        event = Event(
            request_id or route.request_id,
            arrival,
            route.endpoint,
            route.variant if route.routed or shadow else "",
            model,
            version,
            latency_s,
            status_code,
            route.key_hash,
        )
        if traceparent:
            event.traceparent = traceparent
        if shadow:
            event.shadow = True
        elif mirrored:
            event.mirrored = True
            event.mirrored_to = route.mirrored_to
        if inputs is not None:
            event.rows = int(inputs.shape[0]) if inputs.ndim else 1
        if outputs is not None:
            if shadow or mirrored:
                event.outputs = first_row(outputs, MAX_OUTPUTS)
            if self.sample_rate > 0 and self._random() < self.sample_rate:
                limit = self.max_values
                event.predictions = self._outputs.pair(first_row(outputs, limit))
                if inputs is not None:
                    event.features = self._inputs.pair(first_row(inputs, limit))
        self.pipeline.emit(event)
