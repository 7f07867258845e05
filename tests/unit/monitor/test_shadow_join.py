"""Shadow comparisons joined by request id: inference reports a mirrored primary and the
shadow copy separately; the monitor pairs them into the shadow report."""

from __future__ import annotations

import pytest

from modelhub.monitor.events import Event, Outcome
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.pairing import ShadowJoiner, compare_outputs
from modelhub.monitor.series import SeriesKey

from .helpers import event


def _primary(request_id: str, outputs: list[float], **kw: object) -> Event:
    e = event(
        0.02,
        endpoint="endpoints/fraud",
        variant="champion",
        source="inference",
        request_id=request_id,
        **kw,  # type: ignore[arg-type]
    )
    e.mirrored, e.outputs = True, outputs
    return e


def _shadow(request_id: str, outputs: list[float], status: int = 0) -> Event:
    e = event(
        0.05,
        version=2,
        variant="candidate",
        source="inference",
        request_id=request_id,
        status=status,
    )
    e.shadow, e.outputs = True, outputs
    return e


def test_compare_outputs() -> None:
    assert compare_outputs([0.1, 0.9], [0.2, 0.8]) == (pytest.approx(0.1), True, True)
    assert compare_outputs([0.1, 0.9], [0.9, 0.1])[2] is False  # type: ignore[index]
    assert compare_outputs([1.0], [1.5]) == (0.5, False, False)
    assert compare_outputs([1.0], [1.0, 2.0]) is None
    assert compare_outputs([], []) is None


def test_joined_in_either_order_into_the_shadow_report(monitor: Monitor, clock) -> None:
    result = monitor.ingest(
        [
            _primary("a", [0.1, 0.9]),
            _shadow("b", [0.7, 0.3]),  # shadow first
            _shadow("a", [0.2, 0.8]),
            _shadow("c", [0.0, 1.0], status=14),  # failed shadow
        ]
    )
    assert result.accepted == 4
    monitor.ingest([_primary("b", [0.6, 0.4]), _primary("c", [0.5, 0.5])])
    [summary] = monitor.shadow_report("endpoints/fraud", 3600)
    assert (summary.shadow, summary.model, summary.version) == ("candidate", "models/fraud", 2)
    assert summary.compared == 3 and summary.failed == 1
    assert summary.argmax_compared == 2 and summary.agreement_rate == 1.0
    assert summary.max_abs_diff_max == pytest.approx(0.1)
    assert summary.shadow_latency.p50 == pytest.approx(0.05, rel=0.02)
    assert summary.primary_latency.p50 == pytest.approx(0.02, rel=0.02)
    assert monitor.joiner.counters.joined == 3


def test_shadows_are_not_endpoint_requests(monitor: Monitor) -> None:
    monitor.ingest([_primary("a", [1.0]), _shadow("a", [1.0])])
    endpoint = monitor.stats(SeriesKey(endpoint="endpoints/fraud"), 3600)
    assert endpoint.requests == 1
    # The shadow counts in its own version's series only.
    assert monitor.stats(SeriesKey(model="models/fraud", version=2), 3600).requests == 1
    report = monitor.experiment_report("endpoints/fraud", 3600, 0.05)
    assert [v.variant for v in report.variants] == ["champion"]
    assert report.variants[0].requests == 1
    # The outcome goes to the primary's variant, not to the shadow.
    assert monitor.record_outcomes([Outcome("a", 1.0)]).attributed == 1
    stats = monitor.stats(SeriesKey(endpoint="endpoints/fraud", variant="champion"), 3600)
    assert stats.outcomes == 1


def test_unjoined_halves_expire(monitor: Monitor, clock) -> None:
    window = monitor.settings.shadow_join_window_s
    monitor.ingest([_primary("p", [1.0]), _shadow("s", [1.0])])
    assert len(monitor.joiner) == 2
    clock.advance(window + 1)
    monitor.ingest([_shadow("p", [1.0]), _primary("s", [1.0])])  # too late to join
    counters = monitor.joiner.counters
    assert (counters.expired_primary, counters.expired_shadow, counters.joined) == (1, 1, 0)
    assert monitor.shadow_report("endpoints/fraud", 3600) == []


def test_pending_halves_are_bounded() -> None:
    joiner = ShadowJoiner(max_pending=2, window_s=60)
    for i in range(5):
        joiner.add(_primary(f"r{i}", [1.0]), 100.0)
    assert len(joiner) == 2 and joiner.counters.evicted == 3
    assert joiner.add(_shadow("r0", [1.0]), 100.0) == []  # evicted: nothing to join
    [joined] = joiner.add(_shadow("r4", [1.5]), 100.0)
    assert joined.endpoint == "endpoints/fraud" and joined.result.max_abs_diff == 0.5


def test_a_primary_joins_each_of_its_shadows() -> None:
    joiner = ShadowJoiner(max_pending=10, window_s=60)
    joiner.add(_primary("r", [1.0, 2.0]), 0.0)
    first = _shadow("r", [1.0, 2.0])
    second = _shadow("r", [2.0, 1.0])
    second.variant = "other"
    assert len(joiner.add(first, 1.0)) == 1
    [joined] = joiner.add(second, 2.0)
    assert joined.result.shadow == "other" and joined.result.argmax_agree is False


def test_a_shadow_that_never_answers_counts_as_failed(monitor: Monitor, clock) -> None:
    """A primary names the shadows Envoy sent copies to; one that never answers within the
    join window shows as a failed comparison (DEADLINE_EXCEEDED), not as silence."""
    window = monitor.settings.shadow_join_window_s
    answered = _primary("ok", [0.1, 0.9])
    answered.mirrored_to = ("candidate=fraud:2",)
    silent = _primary("dead", [0.1, 0.9])
    silent.mirrored_to = ("candidate=fraud:2", "other=fraud:3")
    monitor.ingest([answered, silent, _shadow("ok", [0.2, 0.8])])
    clock.advance(window + 1)
    monitor.ingest([_primary("later", [1.0])])  # expiry is noticed with the next arrival
    assert monitor.joiner.counters.missing == 2
    report = {s.shadow: s for s in monitor.shadow_report("endpoints/fraud", 3600)}
    # `compared` counts failed comparisons too (monitor.proto).
    assert (report["candidate"].compared, report["candidate"].failed) == (2, 1)
    assert (report["other"].compared, report["other"].failed) == (1, 1)
    assert (report["other"].model, report["other"].version) == ("models/fraud", 3)


def test_malformed_mirrored_entries_are_left_out() -> None:
    """`mirrored_to` is parsed as the routing header it came from: entries without a shadow
    name or a version number are skipped, a full model name is accepted."""
    joiner = ShadowJoiner(max_pending=10, window_s=1)
    primary = _primary("r", [1.0])
    primary.mirrored_to = ("nameless", "=fraud:2", "bad=fraud:v", "s=fraud", "ok=models/fraud:4")
    joiner.add(primary, 0.0)
    [missing] = joiner.expire(10.0)
    assert joiner.counters.missing == 1
    assert (missing.result.shadow, missing.result.model, missing.result.version) == (
        "ok",
        "models/fraud",
        4,
    )
