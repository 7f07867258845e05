"""Events in over the client stream, figures out through GetStats/ListStats, the
Prometheus endpoint, experiment and shadow reports."""

from __future__ import annotations

import asyncio
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.monitor.clock import ManualClock

from .conftest import Service, start_service
from .helpers import inference_event, ingest

QS = (0.5, 0.9, 0.95, 0.99)


async def test_stream_of_batches_and_percentiles_from_two_sources(service: Service) -> None:
    rng = np.random.default_rng(0)
    router = rng.lognormal(-3.0, 0.5, 3_000)
    inference = rng.lognormal(-3.5, 0.3, 2_000)
    reply = await ingest(
        service.stub,
        [inference_event(float(x), source="router") for x in router[:1_500]],
        [inference_event(float(x), source="router") for x in router[1_500:]],
        [inference_event(float(x), source="inference") for x in inference],
    )
    assert (reply.accepted, reply.rejected, reply.dropped) == (5_000, 0, 0)

    both = await service.stub.GetStats(
        pb.GetStatsRequest(key=pb.SeriesKey(model="models/fraud"), window_seconds=60)
    )
    merged = np.concatenate([router, inference])
    exact = np.quantile(merged, QS, method="lower")
    got = [both.latency.p50, both.latency.p90, both.latency.p95, both.latency.p99]
    for estimate, truth in zip(got, exact, strict=True):
        assert abs(estimate - truth) <= both.latency.relative_accuracy * truth
    assert both.requests == 5_000 and both.window_seconds == 60
    assert both.latency.max == pytest.approx(merged.max())
    assert both.status_codes == {"OK": 5_000}

    listed = await service.stub.ListStats(pb.ListStatsRequest(window_seconds=300))
    assert sorted((s.key.source, s.requests) for s in listed.stats) == [
        ("inference", 2_000),
        ("router", 3_000),
    ]


async def test_prometheus_endpoint_exposes_histograms(database_url: str) -> None:
    service = await start_service(database_url, ManualClock(), metrics_port=0)
    try:
        await _check_prometheus(service)
    finally:
        await service.close()


async def _check_prometheus(service: Service) -> None:
    await ingest(
        service.stub,
        [inference_event(0.004, endpoint="endpoints/fraud", variant="champion")] * 3
        + [inference_event(0.3, endpoint="endpoints/fraud", variant="champion", status_code=14)],
    )
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(service.metrics_url, timeout=5).read().decode()
    )
    families = {f.name: f for f in text_string_to_metric_families(body)}
    histogram = families["modelhub_monitor_request_duration_seconds"]
    assert histogram.type == "histogram"
    counts = {
        s.labels["le"]: s.value
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["variant"] == "champion"
    }
    assert counts["0.005"] == 3.0 and counts["+Inf"] == 4.0
    codes = {
        s.labels["code"]: s.value
        for s in families["modelhub_monitor_requests"].samples
        if s.labels["variant"] == "champion"
    }
    assert codes == {"OK": 3.0, "UNAVAILABLE": 1.0}
    # The runtime's RPC metrics live in the same registry.
    assert "modelhub_grpc_server_handled" in families


async def test_experiment_report_over_grpc(service: Service) -> None:
    rng = np.random.default_rng(1)
    n = 6_000
    events, outcomes = [], []
    for variant, rate in (("champion", 0.10), ("challenger", 0.13)):
        converted = rng.random(n) < rate
        for i in range(n):
            request_id = f"{variant}-{i}"
            events.append(
                inference_event(
                    0.01, endpoint="endpoints/fraud", variant=variant, request_id=request_id
                )
            )
            if converted[i]:
                outcomes.append(pb.Outcome(request_id=request_id, value=1.0))
    await ingest(service.stub, events[:n], events[n:])
    recorded = await service.stub.RecordOutcomes(pb.RecordOutcomesRequest(outcomes=outcomes))
    assert recorded.attributed == len(outcomes)
    report = await service.stub.GetExperimentReport(
        pb.GetExperimentReportRequest(endpoint="endpoints/fraud")
    )
    assert report.window_seconds == 3600 and report.alpha == 0.05
    assert {v.variant for v in report.variants} == {"champion", "challenger"}
    for variant in report.variants:
        assert variant.requests == n
        assert variant.outcome_rate_ci.lower < variant.outcome_rate < variant.outcome_rate_ci.upper
    [comparison] = report.comparisons
    assert comparison.significant and comparison.p_value < 0.01


async def test_shadow_report_over_grpc(service: Service) -> None:
    events = [
        inference_event(
            0.02,
            endpoint="endpoints/fraud",
            variant="champion",
            shadows=[
                pb.ShadowComparison(
                    shadow="next",
                    model="models/fraud",
                    version=2,
                    latency_seconds=0.05,
                    max_abs_diff=0.001 * i,
                    argmax_agree=i % 4 != 0,
                    has_argmax=True,
                )
            ],
        )
        for i in range(100)
    ]
    await ingest(service.stub, events)
    report = await service.stub.GetShadowReport(
        pb.GetShadowReportRequest(endpoint="endpoints/fraud")
    )
    [shadow] = report.shadows
    assert (shadow.shadow, shadow.version, shadow.compared) == ("next", 2, 100)
    assert shadow.agreement_rate == pytest.approx(0.75)
    assert shadow.max_abs_diff_max == pytest.approx(0.099)
    assert shadow.shadow_latency.p50 == pytest.approx(0.05, rel=0.01)
    assert shadow.latency_delta_mean == pytest.approx(0.03)
