"""QueryTimeSeries on a real monitor fed over IngestEvents: per-step counts and latency
quantiles per variant of an endpoint and per version of a model, zeros for quiet steps,
merged steps, the router's view preferred, fixed memory per series and the cap on series
with history, argument checks. (The histogram's accuracy on many distributions, the ring
and the pool: tests/unit/monitor/test_history.py.)"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.timeseries import HISTORY_BYTES

from .conftest import Service, start_service
from .helpers import inference_event, ingest

# p50/p99 against numpy's exact order statistics, for the few hundred lognormal latencies
# here (measured: 1.0 % and 2.4 %); the hard bound, whatever the data, is one histogram bin
# (timeseries.HISTORY_MAX_ERROR, 18 %).
TOLERANCE = 0.05


def at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def events(
    t: float, latencies: np.ndarray, errors: int = 0, **fields: object
) -> list[pb.InferenceEvent]:
    """One event per latency at time t, the first `errors` of them failed (UNAVAILABLE)."""
    return [
        inference_event(float(x), time=at(t), status_code=14 if i < errors else 0, **fields)
        for i, x in enumerate(latencies)
    ]


def endpoint_events(variant: str, version: int, **kwargs: Any) -> dict[str, Any]:
    return {"endpoint": "endpoints/fraud", "variant": variant, "version": version, **kwargs}


async def test_points_per_variant_with_zeros_and_quantiles(service: Service) -> None:
    now = service.clock.advance(3600 + 5)  # five seconds into a 10-second step
    rng = np.random.default_rng(1)
    a_late = rng.lognormal(-3.0, 0.5, 400)
    a_early = rng.lognormal(-4.0, 0.2, 50)
    b_late = rng.lognormal(-2.0, 0.3, 100)
    await ingest(
        service.stub,
        events(now - 2, a_late, errors=7, **endpoint_events("a", 1)),
        events(now - 65, a_early, **endpoint_events("a", 1)),
        events(now - 1, b_late, errors=100, **endpoint_events("b", 2)),
        # Another endpoint's traffic, and traffic of the model called directly.
        events(now - 1, a_late[:10], endpoint="endpoints/other", variant="a"),
        events(now - 1, a_late[:10]),
    )

    answer = await service.stub.QueryTimeSeries(
        pb.QueryTimeSeriesRequest(endpoint="endpoints/fraud")
    )
    assert answer.step_seconds == 10
    assert [(s.variant, s.model, s.version) for s in answer.series] == [
        ("a", "models/fraud", "1"),
        ("b", "models/fraud", "2"),
    ]
    newest_start = (now // 10) * 10
    assert answer.start_time.ToNanoseconds() == int((newest_start - 3590) * 1e9)
    assert answer.end_time.ToSeconds() == int(now)
    a, b = answer.series
    assert len(a.points) == len(b.points) == 360
    times = [p.time.ToSeconds() for p in a.points]
    assert times == [int(newest_start - 10 * i) for i in range(359, -1, -1)]

    # The newest point: 400 requests, 7 errors, over the 5 s of the step that have passed.
    newest = a.points[-1]
    assert (newest.requests, newest.errors) == (400, 7)
    assert newest.requests_per_second == pytest.approx(400 / 5)
    assert newest.errors_per_second == pytest.approx(7 / 5)
    for estimate, q in ((newest.p50_ms, 0.5), (newest.p99_ms, 0.99)):
        truth = float(np.quantile(a_late, q, method="lower")) * 1000
        assert abs(estimate - truth) <= TOLERANCE * truth
    # 65 s ago: six steps back, a full step (rates over 10 s).
    early = a.points[-7]
    assert early.time.ToSeconds() == int(((now - 65) // 10) * 10)
    assert (early.requests, early.requests_per_second) == (50, pytest.approx(5.0))
    # Steps without traffic are zeros, without quantiles.
    quiet = [p for i, p in enumerate(a.points) if i not in (353, 359)]
    assert all(p.requests == 0 and p.errors == 0 for p in quiet)
    assert not any(p.HasField("p50_ms") or p.HasField("p99_ms") for p in quiet)
    assert b.points[-1].errors == 100 and sum(p.requests for p in b.points) == 100

    # One-minute points, for the last five minutes: the a_early step merges into its minute.
    minutes = await service.stub.QueryTimeSeries(
        pb.QueryTimeSeriesRequest(endpoint="endpoints/fraud", window_seconds=300, step_seconds=60)
    )
    a = minutes.series[0]
    assert minutes.step_seconds == 60 and len(a.points) == 5
    assert [p.requests for p in a.points] == [0, 0, 0, 50, 400]
    for point, values in ((a.points[-2], a_early), (a.points[-1], a_late)):
        truth = float(np.quantile(values, 0.99, method="lower")) * 1000
        assert abs(point.p99_ms - truth) <= TOLERANCE * truth


async def test_model_series_per_version_and_the_router_view(service: Service) -> None:
    now = service.clock.advance(3600)
    latencies = np.full(30, 0.02)
    await ingest(
        service.stub,
        events(now - 30, latencies, version=1, source="router"),
        events(now - 30, latencies[:20], version=1, source="inference"),
        events(now - 10, latencies[:5], version=3, source="inference"),
        events(now - 10, latencies[:5], version=3, model="models/other"),
    )
    answer = await service.stub.QueryTimeSeries(pb.QueryTimeSeriesRequest(model="models/fraud"))
    got = {(s.variant, s.version): sum(p.requests for p in s.points) for s in answer.series}
    # Version 1: the router reported it, so the inference copies of it do not count twice.
    assert got == {("", "1"): 30, ("", "3"): 5}
    only = await service.stub.QueryTimeSeries(
        pb.QueryTimeSeriesRequest(model="models/fraud", version="3", window_seconds=60)
    )
    assert [(s.version, len(s.points)) for s in only.series] == [("3", 6)]
    # One latency in the step: its least and greatest make the answer exact (float32).
    assert only.series[0].points[-2].p50_ms == pytest.approx(20.0, rel=1e-6)
    none = await service.stub.QueryTimeSeries(pb.QueryTimeSeriesRequest(model="models/nobody"))
    assert list(none.series) == [] and none.step_seconds == 10


async def test_older_than_the_hour_falls_out_and_memory_stays_bounded(service: Service) -> None:
    start = service.clock.now
    # Two hours of traffic, one event every 5 s.
    for i in range(0, 7200, 5):
        service.clock.now = start + i
        await ingest(service.stub, events(start + i, np.array([0.01]), **endpoint_events("a", 1)))
    answer = await service.stub.QueryTimeSeries(
        pb.QueryTimeSeriesRequest(endpoint="endpoints/fraud", step_seconds=600)
    )
    counts = [p.requests for p in answer.series[0].points]
    assert counts == [120] * 6
    monitor = service.app.monitor
    (series,) = monitor.series
    assert series.history is not None and series.history.nbytes == HISTORY_BYTES
    assert monitor.series.histories.allocated == 1


async def test_series_beyond_the_history_cap_are_left_out(database_url: str) -> None:
    clock = ManualClock()
    service = await start_service(database_url, clock, max_history_series=2)
    try:
        now = clock.advance(3600)
        await ingest(
            service.stub,
            *(events(now - 5, np.full(3, 0.01), **endpoint_events(v, 1)) for v in "abc"),
        )
        answer = await service.stub.QueryTimeSeries(
            pb.QueryTimeSeriesRequest(endpoint="endpoints/fraud")
        )
        # Every event was counted (windows, Prometheus); only two series keep history.
        assert [s.variant for s in answer.series] == ["a", "b"]
        assert service.app.monitor.counters.accepted == 9
        histories = service.app.monitor.series.histories
        assert (histories.allocated, histories.refused) == (2, 3)

        # An hour and a step later a and b have nothing left in their history: c's next
        # event takes one of theirs, without allocating more.
        now = clock.advance(3600 + 20)
        await ingest(service.stub, events(now - 1, np.full(4, 0.02), **endpoint_events("c", 1)))
        answer = await service.stub.QueryTimeSeries(
            pb.QueryTimeSeriesRequest(endpoint="endpoints/fraud", window_seconds=60)
        )
        assert [(s.variant, sum(p.requests for p in s.points)) for s in answer.series] == [("c", 4)]
        assert histories.allocated == 2
        (busy,) = [p for p in answer.series[0].points if p.requests]
        assert busy.p99_ms == pytest.approx(20.0, rel=1e-6)
    finally:
        await service.close()


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({}, "model"),
        ({"endpoint": "endpoints/fraud", "model": "models/fraud"}, "endpoint"),
        ({"endpoint": "fraud"}, "endpoint"),
        ({"model": "models/Fraud!"}, "model"),
        ({"endpoint": "endpoints/fraud", "version": "1"}, "version"),
        ({"model": "models/fraud", "version": "one"}, "version"),
        ({"model": "models/fraud", "version": "0"}, "version"),
        ({"model": "models/fraud", "window_seconds": 3601}, "window_seconds"),
        ({"model": "models/fraud", "window_seconds": -5}, "window_seconds"),
        ({"model": "models/fraud", "step_seconds": 15}, "step_seconds"),
        ({"model": "models/fraud", "step_seconds": -10}, "step_seconds"),
        ({"model": "models/fraud", "window_seconds": 60, "step_seconds": 120}, "step_seconds"),
    ],
)
async def test_bad_arguments_say_which_field(
    service: Service, request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.QueryTimeSeries(pb.QueryTimeSeriesRequest(**request_fields))  # type: ignore[arg-type]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
