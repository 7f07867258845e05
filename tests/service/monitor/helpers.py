"""Message builders for the monitor's service tests."""

from __future__ import annotations

from typing import Any

from modelhub.api.monitor.v1 import monitor_pb2 as pb


def inference_event(latency: float = 0.01, **fields: Any) -> pb.InferenceEvent:
    fields.setdefault("model", "models/fraud")
    fields.setdefault("version", 1)
    fields.setdefault("source", "router")
    return pb.InferenceEvent(latency_seconds=latency, **fields)


async def ingest(stub: Any, *batches: list[pb.InferenceEvent], strict: bool = False) -> Any:
    """Send the batches over one IngestEvents stream; the response."""

    async def requests() -> Any:
        for batch in batches:
            yield pb.IngestEventsRequest(events=batch, strict=strict)

    return await stub.IngestEvents(requests())
