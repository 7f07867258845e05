"""Bad events: rejected one by one with reasons (default), or the whole batch refused with
INVALID_ARGUMENT and nothing kept (strict). Bad outcomes: the whole batch refused."""

from __future__ import annotations

import math

import pytest

from modelhub.common.errors import FieldViolation, InvalidArgumentError
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.events import Outcome, ShadowResult
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.series import SeriesKey

from .helpers import event

BAD_EVENTS = [
    (event(math.nan), "latency_seconds", "must be finite and non-negative, got nan"),
    (event(-0.5), "latency_seconds", "non-negative"),
    (event(model=""), "model", "is required"),
    (event(model="fraud"), "model", "models/{model}"),
    (event(version=0), "version", "positive"),
    (event(status=42), "status_code", "0-16"),
    (event(endpoint="fraud"), "endpoint", "endpoints/{endpoint}"),
    (event(source="batch"), "source", "router, inference, unknown"),
    (event(features=[("x", math.inf)]), "features[0].number", "finite"),
    (event(features=[("", 1.0)]), "features[0].name", "letters"),
]


@pytest.mark.parametrize(("bad", "field", "message"), BAD_EVENTS)
def test_lenient_batch_keeps_valid_events_and_counts_the_bad_one(
    monitor: Monitor, bad, field: str, message: str
) -> None:
    result = monitor.ingest([event(0.01), bad, event(0.02)])
    assert (result.accepted, result.rejected, result.dropped) == (2, 1, 0)
    assert result.reject_reasons[0].startswith(f"events[1].{field}: ")
    assert message in result.reject_reasons[0]
    assert monitor.stats(SeriesKey(), 300).requests == 2


@pytest.mark.parametrize(("bad", "field", "message"), BAD_EVENTS)
def test_strict_batch_fails_whole_and_stores_nothing(
    monitor: Monitor, bad, field: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        monitor.ingest([event(0.01), bad, event(0.02)], strict=True)
    assert err.value.violations[0].field == f"events[1].{field}"
    assert message in err.value.message and "nothing was stored" in err.value.message
    assert monitor.stats(SeriesKey(), 300).requests == 0
    assert monitor.counters.accepted == 0 and monitor.counters.rejected == {}
    assert len(monitor.series) == 0 and len(monitor.requests) == 0


def test_decode_violations_reject_the_event(monitor: Monitor) -> None:
    problems = {0: [FieldViolation("", "unknown field number 99")]}
    result = monitor.ingest([event(), event()], decode_violations=problems)
    assert (result.accepted, result.rejected) == (1, 1)
    assert result.reject_reasons == ["events[0]: unknown field number 99"]


def test_future_events_beyond_the_clock_skew_are_rejected(
    monitor: Monitor, clock: ManualClock
) -> None:
    result = monitor.ingest([event(t=clock() + 10), event(t=clock() + 3600)])
    assert (result.accepted, result.rejected) == (1, 1)
    assert "in the future" in result.reject_reasons[0]


def test_bad_shadow_comparison_rejects_its_event(monitor: Monitor) -> None:
    bad = event()
    bad.shadows = [ShadowResult("s", "models/fraud", 2, latency_s=-1.0)]
    result = monitor.ingest([bad])
    assert result.rejected == 1
    assert result.reject_reasons[0].startswith("events[0].shadows[0].latency_seconds")


def test_reject_reasons_are_capped(monitor: Monitor) -> None:
    result = monitor.ingest([event(-1.0) for _ in range(50)])
    assert result.rejected == 50 and len(result.reject_reasons) == 20


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        (Outcome("", 1.0), "request_id"),
        (Outcome("r1", math.nan), "value"),
        (Outcome("r1", 0.5), "value"),  # a conversion is 0 or 1
        (Outcome("r1", 1.0, kind="click"), "kind"),
    ],
)
def test_bad_outcome_fails_the_batch_and_records_nothing(
    monitor: Monitor, outcome: Outcome, field: str
) -> None:
    monitor.ingest([event(request_id="r0"), event(request_id="r1")])
    with pytest.raises(InvalidArgumentError) as err:
        monitor.record_outcomes([Outcome("r0", 1.0), outcome])
    assert err.value.violations[0].field == f"outcomes[1].{field}"
    assert monitor.stats(SeriesKey(), 300).outcomes == 0
    # r0 was not attributed by the failed batch: it still can be.
    assert monitor.record_outcomes([Outcome("r0", 1.0)]).attributed == 1
