"""Alert state machine with a manual clock: pending → firing after `for` → resolved,
watchers see every transition, no data is "condition false"."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from modelhub.common.errors import ResourceExhaustedError, UnavailableError
from modelhub.monitor.alerts import AlertEvent, AlertManager, AlertState
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.rules import AlertRule, Comparator
from modelhub.monitor.series import SeriesKey

from .helpers import event


def _rule(**changes: object) -> AlertRule:
    base = AlertRule(
        rule_id="errors",
        display_name="fraud errors",
        metric="error_rate",
        series=SeriesKey(model="models/fraud"),
        comparator=Comparator.GREATER_THAN,
        threshold=0.1,
        window_s=60,
        for_s=30.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _states(events: list[AlertEvent]) -> list[tuple[AlertState, AlertState]]:
    return [(e.previous, e.alert.state) for e in events]


async def test_error_rate_rule_pending_firing_resolved(
    monitor: Monitor, clock: ManualClock
) -> None:
    await monitor.create_rule("errors", _rule())
    assert await monitor.alerts.evaluate() == []  # no traffic: no data, nothing happens
    monitor.ingest([event(status=14 if i % 4 == 0 else 0) for i in range(100)])  # 25% errors
    first = await monitor.alerts.evaluate()
    assert _states(first) == [(AlertState.INACTIVE, AlertState.PENDING)]
    assert first[0].alert.value == pytest.approx(0.25)
    clock.advance(20)
    assert await monitor.alerts.evaluate() == []  # still pending: 20 s < for 30 s
    clock.advance(15)
    monitor.ingest([event(status=14) for _ in range(10)])
    firing = await monitor.alerts.evaluate()
    assert _states(firing) == [(AlertState.PENDING, AlertState.FIRING)]
    assert firing[0].alert.active_since == first[0].alert.last_transition
    assert [a.state for a in monitor.alerts.alerts()] == [AlertState.FIRING]
    # Errors age out of the 60 s window while healthy traffic continues.
    clock.advance(61)
    monitor.ingest([event() for _ in range(50)])
    resolved = await monitor.alerts.evaluate()
    assert _states(resolved) == [(AlertState.FIRING, AlertState.RESOLVED)]
    assert resolved[0].alert.value == 0.0
    # Kept for a while in the list, then forgotten.
    assert [a.state for a in monitor.alerts.alerts()] == [AlertState.RESOLVED]
    clock.advance(monitor.settings.resolved_retention_s + 1)
    monitor.ingest([event()])
    await monitor.alerts.evaluate()
    assert monitor.alerts.alerts() == []


async def test_pending_that_clears_resolves_and_zero_for_fires_at_once(
    monitor: Monitor, clock: ManualClock
) -> None:
    await monitor.create_rule("slow", _rule(rule_id="", for_s=0.0, metric="latency_p99",
                                             threshold=0.5))  # fmt: skip
    await monitor.create_rule("errors", _rule())
    monitor.ingest([event(1.0, status=14) for _ in range(10)])
    events = await monitor.alerts.evaluate()
    assert {e.alert.rule: e.alert.state for e in events} == {
        "rules/slow": AlertState.FIRING,
        "rules/errors": AlertState.PENDING,
    }
    clock.advance(61)
    monitor.ingest([event(0.01) for _ in range(10)])
    events = await monitor.alerts.evaluate()
    assert {e.alert.rule: (e.previous, e.alert.state) for e in events} == {
        "rules/slow": (AlertState.FIRING, AlertState.RESOLVED),
        "rules/errors": (AlertState.PENDING, AlertState.RESOLVED),
    }


async def test_watchers_receive_transitions_and_deleting_resolves(
    monitor: Monitor, clock: ManualClock
) -> None:
    await monitor.create_rule("errors", _rule(for_s=0.0))
    received: list[AlertEvent] = []

    async def watch() -> None:
        async for item in monitor.alerts.watch():
            received.append(item)

    task = asyncio.create_task(watch())
    while monitor.alerts.watcher_count == 0:
        await asyncio.sleep(0)
    monitor.ingest([event(status=13)])
    await monitor.alerts.evaluate()
    await monitor.delete_rule("rules/errors")
    monitor.alerts.close()
    await asyncio.wait_for(task, 1)
    assert _states(received) == [
        (AlertState.INACTIVE, AlertState.FIRING),
        (AlertState.FIRING, AlertState.RESOLVED),
    ]
    assert monitor.alerts.watcher_count == 0


async def test_send_initial_and_slow_watchers_are_ended() -> None:
    clock = ManualClock()
    values = iter([1.0, 1.0, 1.0, 1.0])

    async def metric(rule: AlertRule, now: float) -> float | None:
        return next(values)

    manager = AlertManager(metric, clock, watcher_queue_size=1, max_watchers=1)
    manager.load([_rule(for_s=0.0), _rule(rule_id="b", for_s=0.0)])
    await manager.evaluate()
    stream = manager.watch(send_initial=True)
    initial = [await anext(stream), await anext(stream)]
    assert all(e.initial and e.alert.state is AlertState.FIRING for e in initial)
    with pytest.raises(ResourceExhaustedError, match="too many alert watchers"):
        await anext(manager.watch())
    # Two transitions for a queue of one: the watcher is ended, not buffered forever.
    manager.put_rule(_rule(threshold=0.5, for_s=0.0))
    manager.put_rule(_rule(rule_id="b", threshold=0.5, for_s=0.0))
    with pytest.raises(ResourceExhaustedError, match="fell too far behind"):
        await anext(stream)


async def test_metric_errors_leave_the_alert_as_it_is() -> None:
    clock = ManualClock()
    answers: list[float | Exception] = [1.0, UnavailableError("registry down")]

    async def metric(rule: AlertRule, now: float) -> float | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    manager = AlertManager(metric, clock)
    manager.load([_rule(for_s=0.0)])
    await manager.evaluate()
    assert await manager.evaluate() == []
    assert [a.state for a in manager.alerts()] == [AlertState.FIRING]
    assert manager.evaluation_errors == 1


async def test_rules_survive_a_restart(monitor: Monitor, settings, store, clock) -> None:
    await monitor.create_rule("errors", _rule())
    restarted = Monitor(settings, store, clock=clock)
    await restarted.start()
    restarted.ingest([event(status=14)])
    events = await restarted.alerts.evaluate()
    assert [e.alert.rule for e in events] == ["rules/errors"]


async def test_request_rate_rule_fires_when_traffic_stops(
    monitor: Monitor, clock: ManualClock
) -> None:
    await monitor.create_rule(
        "quiet",
        _rule(metric="request_rate", comparator=Comparator.LESS_THAN, threshold=1.0, for_s=0.0),
    )
    monitor.ingest([event() for _ in range(600)])
    assert await monitor.alerts.evaluate() == []
    clock.advance(120)
    events = await monitor.alerts.evaluate()
    assert _states(events) == [(AlertState.INACTIVE, AlertState.FIRING)]
