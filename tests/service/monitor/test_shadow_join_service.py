"""Primary and shadow events sent separately (as inference reports them) and joined by
request id into the shadow report, over gRPC."""

from __future__ import annotations

import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as pb

from .conftest import Service
from .helpers import inference_event, ingest


async def test_primary_and_shadow_events_join_into_the_report(service: Service) -> None:
    primaries = [
        inference_event(
            0.02,
            request_id=f"r{i}",
            endpoint="endpoints/fraud",
            variant="champion",
            source="inference",
            mirrored=True,
            outputs=[0.2, 0.8],
        )
        for i in range(10)
    ]
    shadows = [
        inference_event(
            0.05,
            request_id=f"r{i}",
            version=2,
            variant="next",
            source="inference",
            shadow=True,
            outputs=[0.25, 0.75] if i % 5 else [0.9, 0.1],
        )
        for i in range(10)
    ]
    # Halves in separate streams and in any order.
    response = await ingest(service.stub, shadows[:5])
    assert response.accepted == 5
    await ingest(service.stub, primaries)
    await ingest(service.stub, shadows[5:])
    report = await service.stub.GetShadowReport(
        pb.GetShadowReportRequest(endpoint="endpoints/fraud")
    )
    [shadow] = report.shadows
    assert (shadow.shadow, shadow.model, shadow.version) == ("next", "models/fraud", 2)
    assert shadow.compared == 10 and shadow.argmax_compared == 10
    assert shadow.agreement_rate == pytest.approx(0.8)
    assert shadow.max_abs_diff_max == pytest.approx(0.7)
    assert shadow.latency_delta_mean == pytest.approx(0.03)
    # The shadow copies are not requests of the endpoint.
    stats = await service.stub.GetStats(
        pb.GetStatsRequest(key=pb.SeriesKey(endpoint="endpoints/fraud"), window_seconds=3600)
    )
    assert stats.requests == 10


async def test_unjoined_halves_expire_and_are_counted(service: Service) -> None:
    await ingest(
        service.stub,
        [
            inference_event(
                request_id="lonely",
                endpoint="endpoints/fraud",
                variant="champion",
                source="inference",
                mirrored=True,
                outputs=[1.0],
            )
        ],
    )
    service.clock.advance(service.app.settings.shadow_join_window_s + 1)
    await ingest(
        service.stub,
        [
            inference_event(
                request_id="lonely",
                version=2,
                variant="next",
                source="inference",
                shadow=True,
                outputs=[1.0],
            )
        ],
    )
    report = await service.stub.GetShadowReport(
        pb.GetShadowReportRequest(endpoint="endpoints/fraud")
    )
    assert list(report.shadows) == []
    assert service.app.monitor.joiner.counters.expired_primary == 1
