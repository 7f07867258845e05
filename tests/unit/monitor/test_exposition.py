"""Prometheus exposition: histograms (not summaries) per series, counters, drift gauges."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelhub.monitor import exposition
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.profile import FeatureSample
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore

from .helpers import event


async def test_series_histograms_and_counters(monitor: Monitor) -> None:
    monitor.ingest(
        [event(0.003, endpoint="endpoints/e", variant="a") for _ in range(4)]
        + [event(0.2, endpoint="endpoints/e", variant="a", status=14)]
        + [event(-1.0)]  # rejected
    )
    rng = np.random.default_rng(0)
    await monitor.set_baseline(
        "models/fraud", 1, features=[FeatureSample("x", rng.normal(size=500).tolist())]
    )
    monitor.ingest([event(features=[("x", float(v))]) for v in rng.normal(size=200)])
    await monitor.drift_report("models/fraud", 1, 3600)
    registry = CollectorRegistry()
    exposition.register(registry, monitor)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert "summary" not in {f.type for f in families.values()}
    duration = families["modelhub_monitor_request_duration_seconds"]
    assert duration.type == "histogram"
    series = {
        "model": "models/fraud", "version": "1", "endpoint": "endpoints/e", "variant": "a",
        "source": "router",
    }  # fmt: skip

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value for s in families[family].samples if s.name == sample and s.labels == labels
        )

    bucket = "modelhub_monitor_request_duration_seconds_bucket"
    assert value(duration.name, bucket, **series, le="0.0025") == 0.0
    assert value(duration.name, bucket, **series, le="0.005") == 4.0
    assert value(duration.name, bucket, **series, le="+Inf") == 5.0
    assert value(duration.name, duration.name + "_sum", **series) == pytest.approx(0.212)
    requests = "modelhub_monitor_requests"
    assert value(requests, requests + "_total", **series, code="UNAVAILABLE") == 1.0
    events = "modelhub_monitor_events"
    assert value(events, events + "_total", result="rejected", reason="latency_seconds") == 1.0
    drift = "modelhub_monitor_drift_score"
    psi = value(drift, drift, model="models/fraud", version="1", feature="x", score="psi")
    assert 0.0 <= psi < 0.2


async def test_events_without_a_history_are_counted(
    settings: MonitorSettings, store: MonitorStore, clock: ManualClock
) -> None:
    monitor = Monitor(settings.model_copy(update={"max_history_series": 1}), store, clock=clock)
    monitor.ingest([event(0.01, version=1), event(0.01, version=2), event(0.01, version=2)])
    registry = CollectorRegistry()
    exposition.register(registry, monitor)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    (sample,) = families["modelhub_monitor_history_refused"].samples
    assert sample.value == monitor.series.histories.refused > 0
