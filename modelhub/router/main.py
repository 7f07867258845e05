"""`python -m modelhub.router`: settings → backends, registry watch, monitor sink →
router, mirror, events → servicers → ServiceRuntime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys

from opentelemetry.sdk.trace import TracerProvider

from modelhub.common.server import ServiceRuntime, serve_until_signalled, suite_service_names
from modelhub.common.telemetry import setup_logging, setup_tracing, shutdown_tracing
from modelhub.router import api, convert, forward, metrics
from modelhub.router.backends import BackendPool, BackendRegistry, HealthChecker
from modelhub.router.events import EventPipeline
from modelhub.router.mirror import Mirror
from modelhub.router.monitor_client import MonitorSink
from modelhub.router.outcomes import OutcomeIndex
from modelhub.router.readiness import ReadinessGate
from modelhub.router.registry_watch import RegistryWatch
from modelhub.router.routing import Router
from modelhub.router.settings import RouterSettings
from modelhub.router.stats import RouterCounters
from modelhub.router.table import RegistryState, build_table, empty_table

log = logging.getLogger("modelhub.router")

ROLES = api.ROLES


class RouterApp:
    """The wired router. Create it inside the running event loop (it opens channels)."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        tracer_provider: TracerProvider | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.counters = RouterCounters()
        self.backends = BackendRegistry(
            forward.connector(settings.max_message_bytes),
            forward.disconnect,
            settings.backend_addresses,
        )
        self.router = Router(empty_table(self.backends), self.counters, rng)
        self.outcomes = OutcomeIndex(settings.outcome_max_requests, settings.outcome_retention_s)
        self.sink: MonitorSink | None = None
        self.events: EventPipeline | None = None
        if settings.monitor_address:
            self.sink = MonitorSink(
                settings.monitor_address,
                token=settings.monitor_token,
                timeout_s=settings.monitor_timeout_s,
                max_message_bytes=settings.max_message_bytes,
            )
            self.events = EventPipeline(
                self.sink,
                max_buffered=settings.event_buffer_size,
                batch_size=settings.event_batch_size,
                flush_interval_s=settings.event_flush_interval_s,
                max_outcomes=settings.max_pending_outcomes,
                sampler=convert.make_sampler(settings.event_max_values),
            )
        self.mirror = Mirror(
            forward.shadow_call,
            convert.response_tensors,
            queue_size=settings.shadow_queue_size,
            concurrency=settings.shadow_concurrency,
            timeout_s=settings.shadow_timeout_s,
        )
        backend_metadata = (
            [("authorization", f"Bearer {settings.backend_token}")]
            if settings.backend_token
            else []
        )
        self.data_plane = forward.DataPlane(
            self.router,
            mirror=self.mirror,
            events=self.events,
            outcomes=self.outcomes,
            generate_request_ids=settings.generate_request_ids,
            event_sample_rate=settings.event_sample_rate,
            backend_metadata=backend_metadata,
        )
        self.health = HealthChecker(
            self.backends,
            forward.prober(settings.health_check_timeout_s),
            settings.health_check_interval_s,
        )
        self.gate = ReadinessGate(
            forward.readiness_prober(settings.health_check_timeout_s),
            self._rebuild,
            timeout_s=settings.version_ready_timeout_s,
        )
        self.watch = RegistryWatch(
            settings.registry_address,
            self._on_state,
            token=settings.registry_token,
            max_message_bytes=settings.max_message_bytes,
            retry_max_s=settings.watch_retry_max_s,
        )
        self.runtime = ServiceRuntime(
            "router", settings, api.ROLES, tracer_provider=tracer_provider
        )
        self.runtime.add_service(
            api.INFERENCE_SERVICE_NAME,
            api.add_inference_to_server,
            api.InferenceServicer(self.router, self.data_plane, self.ready),
        )
        self.runtime.add_service(
            api.SERVICE_NAME,
            api.add_router_to_server,
            api.RouterServicer(self.router, self.counters, self.outcomes, self.events),
        )
        if settings.reflect_all:
            self.runtime.advertise(suite_service_names())
        metrics.register(
            self.runtime.metrics_registry,
            self.counters,
            self.backends,
            self.events,
            lambda: self.router.table.revision,
        )
        self._background: list[asyncio.Task[None]] = []
        self.stopped = False

    def _on_state(self, state: RegistryState) -> None:
        table = build_table(
            state,
            self.backends,
            self.counters,
            self.settings.default_alias,
            choose=self._choose,
        )
        self.gate.commit(table.active_versions())
        self.router.swap(table)
        # Close connections to backends the new table no longer names (graceful).
        task = asyncio.get_running_loop().create_task(self.backends.retain(table.pools()))
        self._background.append(task)
        task.add_done_callback(self._background.remove)

    def _choose(
        self, endpoint: str, variant: str, model: str, version: int, pool: BackendPool
    ) -> tuple[str, int]:
        return self.gate.choose(endpoint, variant, model, version, pool.addresses, pool)

    def _rebuild(self) -> None:
        """A held version became ready: rebuild the table from the latest state."""
        if self.watch.state is not None and not self.stopped:
            self._on_state(self.watch.state)

    def ready(self) -> bool:
        """Ready once the registry's state arrived: before that nothing can be routed."""
        return self.router.table.synced

    @property
    def address(self) -> str:
        return self.runtime.address

    async def _serving_when_synced(self) -> None:
        if not self.ready():
            await self.runtime.set_serving(False)
            await self.watch.synced.wait()
        await self.runtime.set_serving(True)

    def start_background(self, _runtime: ServiceRuntime | None = None) -> None:
        """Start following the registry, checking backends, mirroring and sending events
        (inside the running loop, once the server is up)."""
        self.watch.start()
        self.health.start()
        self.mirror.start()
        if self.events is not None:
            self.events.start()
        task = asyncio.get_running_loop().create_task(self._serving_when_synced())
        self._background.append(task)
        task.add_done_callback(self._background.remove)

    async def start(self) -> None:
        """Serve (for tests and embedding; `main` uses `serve_until_signalled`)."""
        await self.runtime.start()
        self.start_background()

    async def wait_synced(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self.watch.synced.wait(), timeout_s)

    async def close(self) -> None:
        """Release everything but the gRPC server (stopped first by its owner)."""
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.watch.close()
        await self.gate.close()
        await self.health.close()
        await self.mirror.drain(1.0)
        await self.mirror.close()
        if self.events is not None:
            await self.events.close(self.settings.monitor_timeout_s)
        if self.sink is not None:
            await self.sink.close()
        await self.backends.close()

    async def stop(self, grace: float | None = None) -> None:
        self.stopped = True
        await self.runtime.stop(grace)
        await self.close()


async def serve(settings: RouterSettings) -> None:
    provider = setup_tracing("modelhub-router")
    try:
        app = RouterApp(settings, tracer_provider=provider)
        await serve_until_signalled(app.runtime, cleanup=app.close, ready=app.start_background)
    finally:
        shutdown_tracing()


def main() -> int:
    settings = RouterSettings()
    setup_logging("router", settings.log.level, settings.log.format)
    if not settings.backend_addresses:
        log.error("MODELHUB_ROUTER_BACKENDS is empty: name at least one inference server")
        return 2
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
