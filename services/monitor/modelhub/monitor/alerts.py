"""Alert evaluation: each rule's alert moves inactive → pending → firing → resolved.

Every evaluation computes each enabled rule's statistic. While the condition holds the
alert is PENDING, and FIRING once it has held for the rule's `for` duration (at once when
that is 0); when it stops holding, a pending or firing alert is RESOLVED, and a resolved
one is forgotten after `resolved_retention_s`. No data (no requests in the window, no
baseline) counts as "condition false", as in Prometheus. A statistic that cannot be
computed for a transient reason (registry down) leaves the alert as it is.

Every transition goes to the watchers (WatchAlerts streams) and to the optional notifier
(webhooks). Alert state lives in memory; the rules themselves are persisted by the
caller, so a restart re-evaluates them from inactive.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from modelhub.common.errors import ModelHubError, ResourceExhaustedError
from modelhub.monitor.clock import Clock
from modelhub.monitor.rules import AlertRule

log = logging.getLogger("modelhub.monitor.alerts")


class AlertState(enum.Enum):
    INACTIVE = 0
    PENDING = 1
    FIRING = 2
    RESOLVED = 3


@dataclass(frozen=True, slots=True)
class Alert:
    """The alert of one rule at one moment."""

    rule: str
    state: AlertState
    value: float
    active_since: float
    last_transition: float
    display_name: str
    metric: str
    threshold: float


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A transition (or, with `initial`, a current alert sent to a new watcher)."""

    alert: Alert
    previous: AlertState
    initial: bool = False


# The statistic of a rule at a time; None when there is no data.
MetricSource = Callable[[AlertRule, float], Awaitable[float | None]]
Notifier = Callable[[AlertRule, AlertEvent], None]


class _End(enum.Enum):
    CLOSED = "closed"
    OVERFLOW = "overflow"


class _Watcher:
    __slots__ = ("queue",)

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[AlertEvent | _End] = asyncio.Queue(size)


class AlertManager:
    """Holds the rules being evaluated, their alerts, and the watchers of transitions."""

    def __init__(
        self,
        metric_source: MetricSource,
        clock: Clock,
        *,
        resolved_retention_s: float = 900.0,
        max_watchers: int = 64,
        watcher_queue_size: int = 1000,
        notifier: Notifier | None = None,
    ) -> None:
        self._metric = metric_source
        self._clock = clock
        self._retention = resolved_retention_s
        self._max_watchers = max_watchers
        self._queue_size = watcher_queue_size
        self._notifier = notifier
        self._rules: dict[str, AlertRule] = {}
        self._alerts: dict[str, Alert] = {}
        self._watchers: set[_Watcher] = set()
        self.evaluation_errors = 0

    # ------------------------------------------------------------------ rules

    def load(self, rules: list[AlertRule]) -> None:
        """Start evaluating `rules` (at start-up: every alert inactive)."""
        self._rules = {rule.rule_id: rule for rule in rules}
        self._alerts.clear()

    def put_rule(self, rule: AlertRule) -> None:
        """Add or replace a rule. A changed condition (or disabling) ends its alert."""
        previous = self._rules.get(rule.rule_id)
        self._rules[rule.rule_id] = rule
        if previous is None:
            return
        if rule.disabled or previous.condition() != rule.condition():
            self._end(rule.rule_id, rule)
        elif rule.rule_id in self._alerts:
            # Same condition: keep the state, refresh what watchers see of the rule.
            self._alerts[rule.rule_id] = replace(
                self._alerts[rule.rule_id], display_name=rule.display_name
            )

    def remove_rule(self, rule_id: str) -> None:
        rule = self._rules.pop(rule_id, None)
        if rule is not None:
            self._end(rule_id, rule)

    def _end(self, rule_id: str, rule: AlertRule) -> None:
        alert = self._alerts.pop(rule_id, None)
        if alert is not None and alert.state in (AlertState.PENDING, AlertState.FIRING):
            now = self._clock()
            self._publish(
                rule,
                AlertEvent(
                    replace(alert, state=AlertState.RESOLVED, last_transition=now), alert.state
                ),
            )

    # ------------------------------------------------------------- evaluation

    async def evaluate(self) -> list[AlertEvent]:
        """Evaluate every enabled rule once; returns the transitions it caused."""
        events: list[AlertEvent] = []
        for rule in list(self._rules.values()):
            if rule.disabled:
                continue
            now = self._clock()
            try:
                value = await self._metric(rule, now)
            except ModelHubError as exc:
                self.evaluation_errors += 1
                log.warning("cannot evaluate %s: %s", rule.name, exc.message)
                continue
            # The rule may have been removed or replaced while the metric was computed.
            if self._rules.get(rule.rule_id) is not rule:
                continue
            event = self._step(rule, value, now)
            if event is not None:
                events.append(event)
                self._publish(rule, event)
        return events

    def _step(self, rule: AlertRule, value: float | None, now: float) -> AlertEvent | None:
        holds = value is not None and rule.holds(value)
        shown = value if value is not None else 0.0
        alert = self._alerts.get(rule.rule_id)
        state = alert.state if alert is not None else AlertState.INACTIVE
        if holds:
            if state in (AlertState.INACTIVE, AlertState.RESOLVED):
                new_state = AlertState.FIRING if rule.for_s <= 0 else AlertState.PENDING
                return self._transition(rule, alert, new_state, shown, now, active_since=now)
            assert alert is not None
            if state is AlertState.PENDING and now - alert.active_since >= rule.for_s:
                return self._transition(rule, alert, AlertState.FIRING, shown, now)
            self._alerts[rule.rule_id] = replace(alert, value=shown)
            return None
        if state in (AlertState.PENDING, AlertState.FIRING):
            return self._transition(rule, alert, AlertState.RESOLVED, shown, now)
        if state is AlertState.RESOLVED:
            assert alert is not None
            if now - alert.last_transition >= self._retention:
                del self._alerts[rule.rule_id]
            else:
                self._alerts[rule.rule_id] = replace(alert, value=shown)
        return None

    def _transition(
        self,
        rule: AlertRule,
        alert: Alert | None,
        state: AlertState,
        value: float,
        now: float,
        active_since: float | None = None,
    ) -> AlertEvent:
        previous = alert.state if alert is not None else AlertState.INACTIVE
        since = active_since if active_since is not None else (alert.active_since if alert else now)
        new = Alert(
            rule=rule.name,
            state=state,
            value=value,
            active_since=since,
            last_transition=now,
            display_name=rule.display_name,
            metric=rule.metric,
            threshold=rule.threshold,
        )
        self._alerts[rule.rule_id] = new
        return AlertEvent(new, previous)

    async def run(self, interval_s: float) -> None:
        """Evaluate every `interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.evaluate()
            except Exception:  # one bad evaluation must not stop the loop
                self.evaluation_errors += 1
                log.exception("alert evaluation failed")

    # ---------------------------------------------------------------- reading

    def alerts(self) -> list[Alert]:
        """Pending, firing and recently resolved alerts, by rule name."""
        now = self._clock()
        # A copy first: Prometheus scrapes call this from the metrics server's thread.
        current = list(self._alerts.values())
        return sorted(
            (
                a
                for a in current
                if a.state is not AlertState.RESOLVED or now - a.last_transition < self._retention
            ),
            key=lambda a: a.rule,
        )

    def counts(self) -> dict[AlertState, int]:
        out = dict.fromkeys((AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED), 0)
        for alert in self.alerts():
            out[alert.state] += 1
        return out

    # --------------------------------------------------------------- watching

    def _publish(self, rule: AlertRule, event: AlertEvent) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.queue.put_nowait(event)
            except asyncio.QueueFull:
                # It fell behind: end its stream rather than buffer without bound.
                self._end_watcher(watcher, _End.OVERFLOW)
        if self._notifier is not None:
            try:
                self._notifier(rule, event)
            except Exception:  # a notifier bug must not break evaluation
                log.exception("alert notifier failed")

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    async def watch(self, send_initial: bool = False) -> AsyncIterator[AlertEvent]:
        """Every transition from now on (after the current alerts, with `send_initial`).

        The watcher is registered when iteration starts (`watcher_count` shows it); from
        then on no transition is missed. Ends when `close()` is called; raises
        RESOURCE_EXHAUSTED when the watcher fell more than its queue behind.
        """
        if len(self._watchers) >= self._max_watchers:
            raise ResourceExhaustedError(
                f"too many alert watchers ({self._max_watchers}); close one and retry",
                reason="TOO_MANY_WATCHERS",
            )
        watcher = _Watcher(self._queue_size)
        self._watchers.add(watcher)
        try:
            if send_initial:
                for alert in self.alerts():
                    if alert.state in (AlertState.PENDING, AlertState.FIRING):
                        yield AlertEvent(alert, alert.state, initial=True)
            while True:
                item = await watcher.queue.get()
                if item is _End.CLOSED:
                    return
                if item is _End.OVERFLOW:
                    raise ResourceExhaustedError(
                        "alert watcher fell too far behind and was ended; watch again with "
                        "send_initial to resynchronize",
                        reason="WATCHER_OVERFLOW",
                    )
                yield item
        finally:
            self._watchers.discard(watcher)

    def close(self) -> None:
        """End every watch stream (at shutdown, so that streams do not hold it up)."""
        for watcher in list(self._watchers):
            self._end_watcher(watcher, _End.CLOSED)

    def _end_watcher(self, watcher: _Watcher, end: _End) -> None:
        self._watchers.discard(watcher)
        if watcher.queue.full():
            # Whatever it had not read yet no longer matters: it must see the end.
            while not watcher.queue.empty():
                watcher.queue.get_nowait()
        watcher.queue.put_nowait(end)
