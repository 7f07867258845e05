"""`python -m modelhub.router`: settings → registry watch → routing table → Envoy's
configuration (filesystem xDS) → RouterService → ServiceRuntime.

The router is Envoy's control plane: it follows the registry, resolves every endpoint into
a routing table, holds a variant on its current version until a newly deployed one is
ready, and writes the table as Envoy's routes and clusters. No request passes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from modelhub.common.monitor_sink import MonitorSink
from modelhub.common.server import ServiceRuntime, serve_until_signalled, suite_service_names
from modelhub.common.telemetry import setup_logging, setup_tracing, shutdown_tracing
from modelhub.router import api, triton_api, xds
from modelhub.router.fleet import Fleet, dns_resolver
from modelhub.router.fleet_client import GrpcReplicaProbe
from modelhub.router.metrics import RouterCollector
from modelhub.router.outcomes import OutcomeForwarder
from modelhub.router.probes import ReadinessProber
from modelhub.router.readiness import ReadinessGate
from modelhub.router.registry_watch import RegistryWatch
from modelhub.router.routing import Router
from modelhub.router.settings import RouterSettings
from modelhub.router.table import RegistryState, RoutingTable, build_table, empty_table
from modelhub.router.triton import Key, known_replicas
from modelhub.router.triton_service import FrontDoorRepository
from modelhub.router.upstream import RegistryDeployments, Replicas

log = logging.getLogger("modelhub.router")

ROLES = {**api.ROLES, **triton_api.ROLES}


class RouterApp:
    """The wired router. Create it inside the running event loop (it opens channels)."""

    def __init__(
        self, settings: RouterSettings, *, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.settings = settings
        self.default_pool = tuple(settings.backend_addresses)
        console_dir, openapi_file = xds.console_paths(settings.console_dir)
        self.options = xds.XdsOptions(
            default_pool=self.default_pool,
            inference_timeout_s=settings.inference_timeout_s,
            retries=settings.retries,
            upstream_tls=xds.UpstreamTls.from_settings(settings.tls),
            console_dir=console_dir,
            openapi_file=openapi_file,
        )
        self.writer = xds.ConfigWriter(
            Path(settings.envoy_config_dir), warm_s=settings.config_warm_s
        )
        self.router = Router(empty_table())
        self.monitor: MonitorSink | None = None
        if settings.monitor.address:
            self.monitor = MonitorSink(
                settings.monitor.address,
                token=settings.monitor.token,
                timeout_s=settings.monitor.timeout_s,
                tls=settings.tls,
            )
        # One channel per inference replica, shared by the readiness probes and Triton's
        # deployment-wide extensions.
        self.replicas = Replicas(settings.max_message_bytes, settings.tls)
        self.prober = ReadinessProber(
            self.replicas, settings.health_check_timeout_s, settings.backend_token
        )
        # The fleet: every replica of the pools, each address of a DNS name on its own —
        # unless TLS verifies the dialled name (without MODELHUB_TLS_SERVER_NAME), which an
        # IP address would not match.
        expand = not (settings.tls.enabled and not settings.tls.server_name)
        self.fleet = Fleet(
            self.replica_addresses,
            GrpcReplicaProbe(self.replicas, settings.backend_token),
            timeout_s=settings.replica_timeout_s,
            resolver=dns_resolver if expand else None,
        )
        self.gate = ReadinessGate(
            self.prober, self._rebuild, timeout_s=settings.version_ready_timeout_s
        )
        self.watch = RegistryWatch(
            settings.registry,
            self._on_state,
            max_message_bytes=settings.max_message_bytes,
            tls=settings.tls,
            retry_max_s=settings.watch_retry_max_s,
        )
        self.runtime = ServiceRuntime("router", settings, ROLES, tracer_provider=tracer_provider)
        self.runtime.add_service(
            api.SERVICE_NAME,
            api.add_router_to_server,
            api.RouterServicer(
                self.router,
                self.writer,
                OutcomeForwarder(self.monitor.send_outcomes if self.monitor else None),
                self.fleet,
                lambda: self.default_pool,
            ),
        )
        # Triton's repository and statistics extensions for the whole deployment.
        self.registry = RegistryDeployments(
            settings.registry.address, settings.max_message_bytes, settings.tls
        )
        self.repository = FrontDoorRepository(
            self.replica_addresses,
            self._deployed,
            self.replicas,
            self.registry,
            backend_token=settings.backend_token,
            default_alias=settings.default_alias,
            replica_timeout_s=settings.replica_timeout_s,
        )
        budget = triton_api.Budget(settings.repository_load_timeout_s)
        self.runtime.add_service(
            triton_api.OIP_SERVICE_NAME,
            triton_api.add_triton_to_server,
            # The generated base declares every method abstract; the ones not overridden
            # answer UNIMPLEMENTED (Envoy sends them to the inference replicas).
            triton_api.TritonRepositoryServicer(self.repository, budget),  # type: ignore[abstract]
        )
        self.runtime.add_service(
            triton_api.REST_SERVICE_NAME,
            triton_api.add_rest_to_server,
            triton_api.RepositoryRestServicer(self.repository, budget),
        )
        if settings.reflect_all:
            self.runtime.advertise(suite_service_names())
        self._register_metrics()
        self._pending: RoutingTable | None = None
        self._wake = asyncio.Event()
        self._written = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.stopped = False

    def _register_metrics(self) -> None:
        self.runtime.metrics_registry.register(
            RouterCollector(self.writer, lambda: self.router.table.revision)
        )

    def replica_addresses(self) -> tuple[str, ...]:
        """Every inference replica the router routes to (default pool and variant pools)."""
        return known_replicas(self.default_pool, self.router.table)

    def _deployed(self) -> set[Key]:
        state = self.watch.state
        return state.deployed() if state is not None else set()

    def _on_state(self, state: RegistryState) -> None:
        table = build_table(state, self.settings.default_alias, choose=self._choose)
        self.gate.commit(table.active_versions())
        self.router.swap(table)
        self._pending = table
        self._wake.set()

    def _choose(
        self, endpoint: str, variant: str, model: str, version: int, pool: tuple[str, ...]
    ) -> tuple[str, int]:
        addresses = pool or self.default_pool
        return self.gate.choose(endpoint, variant, model, version, addresses, addresses)

    def _rebuild(self) -> None:
        """A held version became ready: rebuild the table from the latest state."""
        if self.watch.state is not None and not self.stopped:
            self._on_state(self.watch.state)

    async def _writer_loop(self) -> None:
        """Write the newest table (only the newest: tables built while a write ran are
        coalesced), in a thread: the writes fsync and pause while Envoy warms clusters."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            table, self._pending = self._pending, None
            if table is None or not table.synced:
                continue
            snap = xds.snapshot(table, self.options)
            errors = self.writer.errors
            changed = await asyncio.to_thread(self.writer.write, snap)
            if self.writer.errors > errors:
                # Envoy keeps routing by the last snapshot; try again unless a newer table
                # arrived meanwhile (it is written instead).
                if self._pending is None:
                    self._pending = table
                await asyncio.sleep(self.settings.config_warm_s or 0.5)
                self._wake.set()
                continue
            if changed:
                log.info(
                    "wrote Envoy configuration for revision %d (%d endpoints, %d clusters) to %s",
                    table.revision, len(table.endpoints), len(snap.clusters),
                    self.writer.directory,
                )  # fmt: skip
            self._written.set()

    def ready(self) -> bool:
        """Ready once the registry's state arrived and Envoy's configuration was written."""
        return self.router.table.synced and self._written.is_set()

    @property
    def address(self) -> str:
        return self.runtime.address

    async def _serving_when_synced(self) -> None:
        if not self.ready():
            await self.runtime.set_serving(False)
            await self._written.wait()
        await self.runtime.set_serving(True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.append(task)
        task.add_done_callback(self._background.remove)

    def start_background(self, _runtime: ServiceRuntime | None = None) -> None:
        """Start following the registry and writing Envoy's configuration (inside the
        running loop, once the server is up)."""
        self.watch.start()
        self._spawn(self._writer_loop())
        self._spawn(self._serving_when_synced())

    async def start(self) -> None:
        """Serve (for tests and embedding; `main` uses `serve_until_signalled`)."""
        await self.runtime.start()
        self.start_background()

    async def wait_synced(self, timeout_s: float = 10.0) -> None:
        """Until the first routing table is written for Envoy."""
        await asyncio.wait_for(self._written.wait(), timeout_s)

    async def close(self) -> None:
        """Release everything but the gRPC server (stopped first by its owner)."""
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.watch.close()
        await self.gate.close()
        await self.replicas.close()
        await self.registry.close()
        if self.monitor is not None:
            await self.monitor.close()

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
