"""Alert rules over gRPC: pending → firing after `for` → resolved, each transition on
WatchAlerts, webhooks posted, rules kept across a restart."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.monitor.clock import ManualClock

from .conftest import Service, start_service
from .helpers import inference_event, ingest

ERROR_RULE = pb.AlertRule(
    display_name="fraud error rate",
    metric="error_rate",
    series=pb.SeriesKey(model="models/fraud"),
    comparator=pb.AlertRule.GREATER_THAN,
    threshold=0.1,
    window_seconds=60,
    for_seconds=30,
)


def _rule(**changes: Any) -> pb.AlertRule:
    rule = pb.AlertRule()
    rule.CopyFrom(ERROR_RULE)
    for name, value in changes.items():
        setattr(rule, name, value)
    return rule


async def _watch(service: Service, **request: Any) -> tuple[Any, asyncio.Queue[pb.AlertEvent]]:
    """Open a WatchAlerts stream, wait until the server registered it, and collect events."""
    call = service.stub.WatchAlerts(pb.WatchAlertsRequest(**request))
    received: asyncio.Queue[pb.AlertEvent] = asyncio.Queue()
    before = service.app.monitor.alerts.watcher_count

    async def pump() -> None:
        async for event in call:
            received.put_nowait(event)

    task = asyncio.create_task(pump())
    async with asyncio.timeout(5):
        while service.app.monitor.alerts.watcher_count == before and not task.done():
            await asyncio.sleep(0.005)
    return task, received


async def _next(received: asyncio.Queue[pb.AlertEvent]) -> tuple[int, int, float]:
    event = await asyncio.wait_for(received.get(), 5)
    return event.previous_state, event.alert.state, event.alert.value


async def test_error_rate_alert_lifecycle_streams_every_transition(service: Service) -> None:
    rule = await service.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(rule_id="fraud-errors", rule=ERROR_RULE)
    )
    assert rule.name == "rules/fraud-errors" and rule.etag
    task, received = await _watch(service)
    evaluate = service.app.monitor.alerts.evaluate

    await ingest(service.stub, [inference_event(status_code=14 if i % 5 == 0 else 0)
                                for i in range(100)])  # fmt: skip
    await evaluate()
    assert await _next(received) == (pb.ALERT_STATE_UNSPECIFIED, pb.PENDING, pytest.approx(0.2))
    listed = await service.stub.ListAlerts(pb.ListAlertsRequest())
    assert [(a.rule, a.state) for a in listed.alerts] == [("rules/fraud-errors", pb.PENDING)]

    service.clock.advance(31)  # past `for`; the errors are still inside the 60 s window
    await evaluate()
    assert await _next(received) == (pb.PENDING, pb.FIRING, pytest.approx(0.2))

    service.clock.advance(60)  # the errors leave the window; healthy traffic goes on
    await ingest(service.stub, [inference_event() for _ in range(50)])
    await evaluate()
    previous, state, value = await _next(received)
    assert (previous, state, value) == (pb.FIRING, pb.RESOLVED, 0.0)
    listed = await service.stub.ListAlerts(pb.ListAlertsRequest())
    assert [a.state for a in listed.alerts] == [pb.RESOLVED]
    assert listed.alerts[0].display_name == "fraud error rate"

    # A late watcher asking for the current alerts gets none: nothing is active.
    task.cancel()
    async with asyncio.timeout(5):
        while service.app.monitor.alerts.watcher_count:
            await asyncio.sleep(0.005)
    late, late_received = await _watch(service, send_initial=True)
    await ingest(service.stub, [inference_event(status_code=2) for _ in range(10)])
    await evaluate()
    assert (await _next(late_received))[1] == pb.PENDING
    late.cancel()


async def test_rules_survive_a_restart(database_url: str) -> None:
    clock = ManualClock()
    first = await start_service(database_url, clock)
    try:
        await first.stub.CreateAlertRule(pb.CreateAlertRuleRequest(rule_id="a", rule=ERROR_RULE))
        await first.stub.CreateAlertRule(
            pb.CreateAlertRuleRequest(rule_id="b", rule=_rule(metric="latency_p99", threshold=0.5))
        )
        updated = await first.stub.UpdateAlertRule(
            pb.UpdateAlertRuleRequest(rule=pb.AlertRule(name="rules/a", threshold=0.3))
        )
        assert updated.threshold == 0.3 and updated.metric == "error_rate"
        await first.stub.DeleteAlertRule(pb.DeleteAlertRuleRequest(name="rules/b"))
    finally:
        await first.close()

    second = await start_service(database_url, clock)
    try:
        listed = await second.stub.ListAlertRules(pb.ListAlertRulesRequest())
        assert [(r.name, r.threshold) for r in listed.rules] == [("rules/a", 0.3)]
        assert listed.rules[0].etag == updated.etag
        # And they are evaluated again straight away.
        await ingest(second.stub, [inference_event(status_code=14)])
        events = await second.app.monitor.alerts.evaluate()
        assert [e.alert.rule for e in events] == ["rules/a"]
    finally:
        await second.close()


async def test_stale_etag_is_aborted_and_missing_rule_not_found(service: Service) -> None:
    created = await service.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(rule_id="a", rule=ERROR_RULE)
    )
    await service.stub.UpdateAlertRule(
        pb.UpdateAlertRuleRequest(rule=pb.AlertRule(name="rules/a", threshold=0.2))
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.UpdateAlertRule(
            pb.UpdateAlertRuleRequest(
                rule=pb.AlertRule(name="rules/a", threshold=0.4, etag=created.etag)
            )
        )
    assert err.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.CreateAlertRule(pb.CreateAlertRuleRequest(rule_id="a", rule=ERROR_RULE))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.stub.GetAlertRule(pb.GetAlertRuleRequest(name="rules/zzz"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", bodies
    server.shutdown()
    server.server_close()
    thread.join()


async def test_webhook_posts_transitions_and_the_loop_evaluates(
    database_url: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = webhook
    # A real evaluation loop this time, every 20 ms.
    service = await start_service(database_url, ManualClock(), evaluation_interval_s=0.02)
    try:
        rule = _rule(for_seconds=0, webhook_url=url)
        await service.stub.CreateAlertRule(pb.CreateAlertRuleRequest(rule_id="hook", rule=rule))
        await ingest(service.stub, [inference_event(status_code=13)])
        async with asyncio.timeout(5):
            while not bodies:
                await asyncio.sleep(0.01)
        [body] = bodies
        assert body["rule"] == "rules/hook" and body["state"] == "FIRING"
        assert body["previous_state"] == "INACTIVE" and body["value"] == 1.0
        assert body["series"]["model"] == "models/fraud"
        # The notifier counts the delivery once the POST has returned, just after the
        # receiver recorded the body.
        async with asyncio.timeout(5):
            while service.app.webhooks.sent < 1:
                await asyncio.sleep(0.01)
        assert service.app.webhooks.sent == 1
    finally:
        await service.close()


async def test_open_watch_streams_end_when_the_server_stops(database_url: str) -> None:
    service = await start_service(database_url, ManualClock(), grace_period_s=30)
    task, _ = await _watch(service)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await service.app.stop()
    await asyncio.wait_for(task, 5)  # the stream ended cleanly
    assert loop.time() - started < 5  # and did not hold the 30 s grace period
    await service.channel.close()
