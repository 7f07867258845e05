"""`python -m modelhub.monitor`: settings → store → domain → servicer → server.

Refuses to start (exit status 2) when the database schema is not at the migrations'
head, naming the command that upgrades it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys

from opentelemetry.sdk.trace import TracerProvider

from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.common.errors import ModelHubError, SchemaOutdatedError
from modelhub.common.server import ServiceRuntime, serve_until_signalled
from modelhub.common.telemetry import setup_logging, setup_tracing, shutdown_tracing
from modelhub.monitor import exposition
from modelhub.monitor.api import ROLES, SERVICE_NAME, MonitorServicer
from modelhub.monitor.audit import AuditLog
from modelhub.monitor.clock import Clock, system_clock
from modelhub.monitor.monitor import BaselineSource, Monitor
from modelhub.monitor.registry_client import RegistryProfiles
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore
from modelhub.monitor.webhook import WebhookNotifier

log = logging.getLogger("modelhub.monitor")


class MonitorApp:
    """A built monitor service: its store, domain, server and background work."""

    def __init__(
        self,
        settings: MonitorSettings,
        store: MonitorStore,
        monitor: Monitor,
        webhooks: WebhookNotifier,
        registry: RegistryProfiles | None,
        tracer_provider: TracerProvider | None,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.store = store
        self.monitor = monitor
        self.audit = audit
        self.webhooks = webhooks
        self.registry = registry
        self.runtime = ServiceRuntime("monitor", settings, ROLES, tracer_provider=tracer_provider)
        # Open WatchAlerts streams end when stopping, instead of holding the grace period.
        self.runtime.on_stop(monitor.alerts.close)
        self.runtime.add_service(
            SERVICE_NAME,
            monitor_pb2_grpc.add_MonitorServiceServicer_to_server,
            MonitorServicer(monitor, audit),
        )
        exposition.register(self.runtime.metrics_registry, monitor, webhooks)
        exposition.register_audit(self.runtime.metrics_registry, audit)
        self._evaluation: asyncio.Task[None] | None = None

    def start_background(self, _runtime: ServiceRuntime | None = None) -> None:
        """Start evaluating alert rules every `evaluation_interval_s`, and the audit
        log's periodic retention."""
        if self._evaluation is None:
            self._evaluation = asyncio.get_running_loop().create_task(
                self.monitor.alerts.run(self.settings.evaluation_interval_s)
            )
        self.audit.start_background()

    async def start(self) -> None:
        """Serve (for tests and embedding; `main` uses `serve_until_signalled`)."""
        await self.runtime.start()
        self.start_background()

    async def stop(self, grace: float | None = None) -> None:
        await self.runtime.stop(grace)
        await self.close()

    async def close(self) -> None:
        """Release everything but the server (stopped by the runtime)."""
        if self._evaluation is not None:
            self._evaluation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evaluation
            self._evaluation = None
        await self.audit.close()
        await self.webhooks.drain(self.settings.webhook_timeout_s)
        if self.registry is not None:
            await self.registry.close()
        await self.store.close()


async def build(
    settings: MonitorSettings,
    *,
    clock: Clock = system_clock,
    rng: random.Random | None = None,
    baseline_source: BaselineSource | None = None,
    tracer_provider: TracerProvider | None = None,
) -> MonitorApp:
    """Wire a monitor from settings; raises SchemaOutdatedError on an old database.

    `baseline_source` replaces the registry client (tests); without it one is made when
    `registry.address` is set."""
    store = MonitorStore.from_url(settings.database_url)
    try:
        await store.check_schema()
    except BaseException:
        await store.close()
        raise
    registry = None
    if baseline_source is None and settings.registry.address:
        registry = RegistryProfiles(settings.registry, tls=settings.tls)
        registry.start()
        baseline_source = registry
    webhooks = WebhookNotifier(settings.webhook_timeout_s, settings.max_webhooks_in_flight)
    monitor = Monitor(
        settings,
        store,
        clock=clock,
        baseline_source=baseline_source,
        notifier=webhooks,
        rng=rng,
    )
    await monitor.start()
    audit = AuditLog(settings, store, clock)
    await audit.start()
    return MonitorApp(settings, store, monitor, webhooks, registry, tracer_provider, audit)


async def serve(settings: MonitorSettings, tracer_provider: TracerProvider | None = None) -> None:
    app = await build(settings, tracer_provider=tracer_provider)
    await serve_until_signalled(app.runtime, cleanup=app.close, ready=app.start_background)


def main() -> int:
    settings = MonitorSettings()
    setup_logging("monitor", settings.log.level, settings.log.format)
    provider = setup_tracing("modelhub-monitor")
    try:
        asyncio.run(serve(settings, provider))
    except SchemaOutdatedError as exc:
        log.error("%s", exc.message)
        print(f"monitor: {exc.message}", file=sys.stderr)
        return 2
    except ModelHubError as exc:
        log.error("cannot start: %s", exc.message)
        return 1
    finally:
        shutdown_tracing()
    return 0
