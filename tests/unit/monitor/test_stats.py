"""Live statistics through the Monitor: rates, errors by code, percentiles (also merged
across sources), prediction distributions, windows sliding with the clock."""

from __future__ import annotations

import numpy as np
import pytest

from modelhub.common.errors import InvalidArgumentError
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.series import SeriesKey
from modelhub.monitor.stats import prediction_label

from .helpers import event

QS = (0.5, 0.9, 0.95, 0.99)


def _assert_percentiles(monitor: Monitor, key: SeriesKey, data: np.ndarray) -> None:
    stats = monitor.stats(key, 300)
    alpha = stats.latency.alpha
    exact = np.quantile(data, QS, method="lower")
    for estimate, truth in zip(stats.latency.quantiles(QS), exact, strict=True):
        assert abs(estimate - truth) <= alpha * truth
    assert stats.requests == data.size
    assert stats.latency.mean == pytest.approx(float(data.mean()))


def test_percentiles_match_numpy_including_two_sources_merged(monitor: Monitor) -> None:
    rng = np.random.default_rng(3)
    router = rng.lognormal(-3.0, 0.6, 6_000)  # end to end, as seen by the router
    inference = rng.lognormal(-3.6, 0.4, 4_000)  # as seen by the inference server
    result = monitor.ingest([event(float(x), source="router") for x in router])
    result2 = monitor.ingest([event(float(x), source="inference") for x in inference])
    assert (result.accepted, result2.accepted) == (6_000, 4_000)
    _assert_percentiles(monitor, SeriesKey(model="models/fraud", source="router"), router)
    _assert_percentiles(monitor, SeriesKey(model="models/fraud", source="inference"), inference)
    # An empty source aggregates: the sketches of both series merged.
    _assert_percentiles(
        monitor, SeriesKey(model="models/fraud"), np.concatenate([router, inference])
    )


def test_rates_errors_and_status_codes(monitor: Monitor, clock: ManualClock) -> None:
    events = [event(0.01, status=0) for _ in range(80)]
    events += [event(0.02, status=14) for _ in range(15)]  # UNAVAILABLE
    events += [event(0.02, status=4) for _ in range(5)]  # DEADLINE_EXCEEDED
    monitor.ingest(events)
    clock.advance(5)
    stats = monitor.stats(SeriesKey(), 60)
    assert stats.requests == 100
    assert stats.errors == 20
    assert stats.error_rate == pytest.approx(0.2)
    assert stats.codes == {"OK": 80, "DEADLINE_EXCEEDED": 5, "UNAVAILABLE": 15}
    # The 60 s window covers the partial current bucket and the 5 before it: 55 s.
    assert stats.request_rate == pytest.approx(100 / 55)


def test_windows_slide_with_the_clock(monitor: Monitor, clock: ManualClock) -> None:
    monitor.ingest([event() for _ in range(10)])
    clock.advance(120)
    monitor.ingest([event() for _ in range(5)])
    key = SeriesKey(model="models/fraud")
    assert monitor.stats(key, 60).requests == 5
    assert monitor.stats(key, 300).requests == 15
    assert monitor.stats(key, 3600).requests == 15
    clock.advance(400)
    assert monitor.stats(key, 300).requests == 0
    assert monitor.stats(key, 3600).requests == 15
    clock.advance(3600)
    assert monitor.stats(key, 3600).requests == 0


def test_event_times_place_events_and_old_ones_are_dropped(
    monitor: Monitor, clock: ManualClock
) -> None:
    now = clock()
    result = monitor.ingest(
        [event(t=now - 30), event(t=now - 200), event(t=now - 1800), event(t=now - 4000)]
    )
    assert result.accepted == 3
    assert result.drop_reasons == {"too_old": 1}
    key = SeriesKey()
    assert monitor.stats(key, 60).requests == 1
    assert monitor.stats(key, 300).requests == 2
    assert monitor.stats(key, 3600).requests == 3


def test_list_stats_one_entry_per_series(monitor: Monitor) -> None:
    monitor.ingest(
        [
            event(endpoint="endpoints/fraud", variant="champion"),
            event(endpoint="endpoints/fraud", variant="challenger", version=2),
            event(endpoint="endpoints/fraud", variant="challenger", version=2),
            event(model="models/churn"),
        ]
    )
    listed = monitor.list_stats(SeriesKey(endpoint="endpoints/fraud"), 300)
    assert [(k.variant, k.version, s.requests) for k, s in listed] == [
        ("champion", 1, 1),
        ("challenger", 2, 2),
    ]
    assert len(monitor.list_stats(SeriesKey(), 300)) == 3
    with pytest.raises(InvalidArgumentError, match=r"filter\.model"):
        monitor.list_stats(SeriesKey(model="fraud"), 300)


def test_prediction_distribution(monitor: Monitor) -> None:
    monitor.ingest(
        [event(predictions=[("label", "fraud")]) for _ in range(3)]
        + [event(predictions=[("label", "ok")]) for _ in range(7)]
        + [event(model="models/score", predictions=[("p", 0.93)])]
    )
    assert monitor.stats(SeriesKey(model="models/fraud"), 300).predictions == {
        "fraud": 3,
        "ok": 7,
    }
    assert monitor.stats(SeriesKey(model="models/score"), 300).predictions == {"[0.9,1.0)": 1}


def test_prediction_labels_are_bounded() -> None:
    assert prediction_label("p", 0.05, False) == "[0.0,0.1)"
    assert prediction_label("p", 1.0, False) == "[0.9,1.0)"
    assert prediction_label("p", -0.35, True) == "p=[-0.4,-0.3)"
    assert prediction_label("y", 1234.0, False) == "[1000,10000)"
    assert prediction_label("y", -50.0, False) == "(-100,-10]"


def test_distinct_prediction_labels_beyond_the_cap_count_as_other(
    monitor: Monitor,
) -> None:
    cap = monitor.settings.max_prediction_labels
    monitor.ingest([event(predictions=[("id", f"c{i}")]) for i in range(cap + 10)])
    predictions = monitor.stats(SeriesKey(), 300).predictions
    assert len(predictions) == cap + 1
    assert predictions["other"] == 10
