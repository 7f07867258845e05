"""Builders shared by the monitor's unit tests."""

from __future__ import annotations

from modelhub.monitor.events import Event, Value


def event(
    latency: float = 0.01,
    *,
    model: str = "models/fraud",
    version: int = 1,
    t: float = 0.0,
    status: int = 0,
    endpoint: str = "",
    variant: str = "",
    source: str = "router",
    request_id: str = "",
    features: list[tuple[str, Value]] | None = None,
    predictions: list[tuple[str, Value]] | None = None,
) -> Event:
    return Event(
        model=model,
        version=version,
        latency_s=latency,
        time=t,
        status_code=status,
        endpoint=endpoint,
        variant=variant,
        source=source,
        request_id=request_id,
        features=features or [],
        predictions=predictions or [],
    )
