"""Alert webhooks: a JSON POST to the rule's URL on every transition.

Posts run in worker threads (urllib blocks) and never delay evaluation; at most
`max_in_flight` run at once, further transitions are not posted but counted, and a
failed post is logged and counted, not retried (the next transition posts again, and
WatchAlerts is the reliable feed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from datetime import UTC, datetime
from typing import Any

from modelhub.monitor.alerts import AlertEvent
from modelhub.monitor.rules import AlertRule

log = logging.getLogger("modelhub.monitor.webhook")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def payload(rule: AlertRule, event: AlertEvent) -> dict[str, Any]:
    """The JSON body posted for a transition."""
    alert = event.alert
    return {
        "rule": alert.rule,
        "display_name": alert.display_name,
        "metric": alert.metric,
        "state": alert.state.name,
        "previous_state": event.previous.name,
        "value": alert.value,
        "threshold": alert.threshold,
        "comparator": rule.comparator.name if rule.comparator else "",
        "window_seconds": rule.window_s,
        "series": {
            "model": rule.series.model,
            "version": rule.series.version,
            "endpoint": rule.series.endpoint,
            "variant": rule.series.variant,
            "source": rule.series.source,
        },
        "active_since": _iso(alert.active_since),
        "time": _iso(alert.last_transition),
    }


def _post(url: str, body: bytes, timeout_s: float) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return int(response.status)


class WebhookNotifier:
    """An `alerts.Notifier` posting to each rule's `webhook_url` (rules without one are
    skipped). Must be called from the event loop."""

    def __init__(self, timeout_s: float = 5.0, max_in_flight: int = 16) -> None:
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def __call__(self, rule: AlertRule, event: AlertEvent) -> None:
        if not rule.webhook_url:
            return
        if len(self._tasks) >= self.max_in_flight:
            self.dropped += 1
            log.warning("webhook for %s not sent: %d posts in flight", rule.name, len(self._tasks))
            return
        body = json.dumps(payload(rule, event)).encode()
        task = asyncio.get_running_loop().create_task(self._send(rule.webhook_url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, url: str, body: bytes) -> None:
        try:
            await asyncio.to_thread(_post, url, body, self.timeout_s)
        except Exception as exc:  # any network or HTTP failure: count and log, never raise
            self.failed += 1
            log.warning("webhook POST to %s failed: %s", url, exc)
        else:
            self.sent += 1

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for the posts in flight (at shutdown, or in tests)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
