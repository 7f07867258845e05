"""`python -m modelhub.inference`: settings → model source → cache → repository →
deployment watcher → service → servicers → ServiceRuntime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.api.oip import rest_pb2_grpc as rest_grpc
from modelhub.common.audit import AuditRecord, record_bytes
from modelhub.common.events import Event, EventPipeline, EventSink
from modelhub.common.monitor_sink import AuditSink, MonitorSink, register_pipeline_metrics
from modelhub.common.server import ServiceRuntime, serve_until_signalled
from modelhub.common.telemetry import setup_logging, setup_tracing, shutdown_tracing
from modelhub.inference import api, repository_api, rest_api
from modelhub.inference.audit import AuditPolicies, RequestAuditor
from modelhub.inference.cache import ArtifactCache
from modelhub.inference.deployments import DeploymentWatcher
from modelhub.inference.endpoints import RoutesTable
from modelhub.inference.local_source import DirectoryModelSource
from modelhub.inference.metrics import InferenceMetrics
from modelhub.inference.registry_source import RegistryModelSource
from modelhub.inference.reporting import RequestReporter
from modelhub.inference.repository import ModelRepository
from modelhub.inference.runtime import RunHook, SessionFactory
from modelhub.inference.service import InferenceService
from modelhub.inference.settings import InferenceSettings
from modelhub.inference.source import ModelSource

log = logging.getLogger("modelhub.inference")

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthGate:
    """Holds gRPC health at NOT_SERVING until `ready()`.

    Readiness (health, which the router and Kubernetes readiness probes trust, and
    ServerReady) waits for the versions the deployments pin; liveness (ServerLive) does
    not. `ServiceRuntime` marks every service SERVING as soon as the port is bound, so the
    gate sits in front of the health servicer's `set`: a SERVING asked for before `ready()`
    is recorded and applied by `refresh()`. (The health servicer itself starts with the
    server SERVING, hence `hold()` before the port opens.)"""

    def __init__(self, health: Any, ready: Callable[[], bool]) -> None:
        # `health` is ServiceRuntime's grpc_health aio HealthServicer (untyped upstream).
        self._set = health.set
        self._ready = ready
        self._wanted: dict[str, int] = {}
        health.set = self.set

    async def set(self, service: str, status: int) -> None:
        self._wanted[service] = status
        if status == _SERVING and not self._ready():
            status = _NOT_SERVING
        await self._set(service, status)

    async def hold(self) -> None:
        await self.set("", _NOT_SERVING)

    async def refresh(self) -> None:
        for service, status in list(self._wanted.items()):
            await self.set(service, status)


ROLES = {**api.ROLES, **repository_api.ROLES}


class InferenceApp:
    """The wired inference service: its gRPC runtime and the domain objects behind it.

    `source`, `tracer_provider`, `metrics_registry`, `run_hook`, `trace_all` (trace
    every call, not only those arriving with a traceparent), `event_sink` (where the
    monitor events go) and `audit_sink` (where payload audit records go) let tests and
    embedders replace what `main` would build from the settings."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        source: ModelSource | None = None,
        tracer_provider: TracerProvider | None = None,
        metrics_registry: CollectorRegistry | None = None,
        run_hook: RunHook | None = None,
        trace_all: bool | None = None,
        event_sink: EventSink[Event] | None = None,
        audit_sink: EventSink[AuditRecord] | None = None,
    ) -> None:
        self.settings = settings
        self.source: ModelSource = source or self._make_source(settings)
        self.runtime = ServiceRuntime(
            "inference",
            settings,
            ROLES,
            tracer_provider=tracer_provider,
            metrics_registry=metrics_registry,
            reuse_port=settings.reuse_port,
            trace_all=trace_all,
        )
        self.metrics = InferenceMetrics(
            self.runtime.metrics_registry, max_variant_labels=settings.max_variant_labels
        )
        tracer = trace.get_tracer("modelhub.inference", tracer_provider=tracer_provider)
        # What the registry's endpoints route to, from the same watch feed as the
        # deployments: the only variant labels trusted, and versions that load on demand.
        self.routes = RoutesTable()
        if settings.watch_deployments and isinstance(self.source, RegistryModelSource):
            self.metrics.variants.exists = self.routes.knows
        self.repository = ModelRepository(
            self.source,
            ArtifactCache(Path(settings.cache_dir), self.source, settings.cache_max_bytes),
            SessionFactory(run_hook, cpu_memory_arena=settings.cpu_memory_arena),
            self.metrics,
            defaults=settings.load_options(),
            memory_budget_bytes=settings.memory_budget_bytes,
            memory_estimate_factor=settings.memory_estimate_factor,
            load_on_demand=settings.load_on_demand,
            resolve_ttl_s=settings.resolve_ttl_s,
            warmup=settings.warmup,
            inline_threshold_s=settings.inline_threshold_s(),
            tracer=tracer,
            routed=self.routes.routes_to,
        )
        # Endpoints' audit policies, from the same watch feed as the deployments.
        self.audit_policies = AuditPolicies()
        self.watcher = (
            DeploymentWatcher(
                self.source, self.repository, audit=self.audit_policies, routes=self.routes
            )
            if settings.watch_deployments
            else None
        )
        self.service = InferenceService(self.repository, self.watcher)
        # Not ready (health NOT_SERVING, ServerReady false) until the deployed versions are
        # loaded or failed to (the watcher's first reconcile, which logs failures).
        self.health_gate: HealthGate | None = None
        self._readiness: asyncio.Task[None] | None = None
        if self.watcher is not None:
            self.health_gate = HealthGate(self.runtime.health, self.service.ready)
        # Events for the monitor (none without a monitor address or an injected sink).
        self.monitor_sink: MonitorSink | None = None
        if event_sink is None and settings.monitor.address:
            event_sink = self.monitor_sink = MonitorSink(
                settings.monitor.address,
                token=settings.monitor.token,
                timeout_s=settings.monitor.timeout_s,
                max_message_bytes=settings.max_message_bytes,
                tls=settings.tls,
            )
        self.events: EventPipeline[Event] | None = None
        reporter: RequestReporter | None = None
        if event_sink is not None:
            self.events = EventPipeline(
                event_sink,
                max_buffered=settings.event_buffer_size,
                max_buffered_bytes=settings.event_buffer_bytes,
                batch_size=settings.event_batch_size,
                flush_interval_s=settings.event_flush_interval_s,
                max_outcomes=1,
            )
            register_pipeline_metrics(
                self.runtime.metrics_registry, self.events, "modelhub_inference"
            )
            reporter = RequestReporter(
                self.events,
                sample_rate=settings.event_sample_rate,
                max_values=settings.event_max_values,
            )
        # Payload audit records: a pipeline of their own (bounds, counters), on the
        # monitor's channel.
        if audit_sink is None and self.monitor_sink is not None:
            audit_sink = AuditSink(self.monitor_sink)
        self.audit: EventPipeline[AuditRecord] | None = None
        auditor: RequestAuditor | None = None
        if audit_sink is not None:
            self.audit = EventPipeline(
                audit_sink,
                max_buffered=settings.audit_buffer_size,
                max_buffered_bytes=settings.audit_buffer_bytes,
                batch_size=settings.audit_batch_size,
                flush_interval_s=settings.audit_flush_interval_s,
                max_outcomes=1,
                size=record_bytes,
                what="audit records",
            )
            register_pipeline_metrics(
                self.runtime.metrics_registry,
                self.audit,
                "modelhub_inference",
                "audit_records",
                "audit records",
            )
            auditor = RequestAuditor(
                self.audit,
                self.audit_policies,
                max_record_bytes=settings.audit_max_record_bytes,
            )
        servicer = api.InferenceServicer(
            self.service,
            self.metrics,
            settings.max_request_bytes,
            reporter,
            auditor,
            self.runtime.authenticator,
        )
        self.runtime.add_service(
            api.SERVICE_NAME, pb_grpc.add_GRPCInferenceServiceServicer_to_server, servicer
        )
        # REST through Envoy's transcoder (the inference port itself speaks only gRPC).
        self.runtime.add_service(
            rest_api.SERVICE_NAME,
            rest_grpc.add_InferenceRestServicer_to_server,
            rest_api.InferenceRestServicer(self.service, servicer, settings.max_request_bytes),
        )
        # ServerReady turns false as soon as stopping begins, with the health status.
        self.runtime.on_stop(self.service.shutting_down)
        self.runtime.add_service(
            repository_api.SERVICE_NAME,
            ipb_grpc.add_ModelRepositoryServiceServicer_to_server,
            repository_api.ModelRepositoryServicer(self.service),
        )

    @staticmethod
    def _make_source(settings: InferenceSettings) -> ModelSource:
        if settings.model_source == "directory":
            if not settings.model_dir:
                raise SystemExit(
                    "MODELHUB_INFERENCE_MODEL_DIR is required with model_source=directory"
                )
            return DirectoryModelSource(Path(settings.model_dir))
        return RegistryModelSource(
            settings.registry,
            max_message_bytes=settings.max_message_bytes,
            default_alias=settings.default_alias,
            tls=settings.tls,
        )

    @property
    def address(self) -> str:
        return self.runtime.address

    async def prepare(self) -> None:
        """Report not ready until the deployments are applied (before the port opens)."""
        if self.health_gate is not None:
            await self.health_gate.hold()

    def start_background(self) -> None:
        """Start following deployments and sending events (call inside the running
        loop)."""
        if self.watcher is not None:
            self.watcher.start()
            self._readiness = asyncio.get_running_loop().create_task(self._ready_when_synced())
        if self.events is not None:
            self.events.start()
        if self.audit is not None:
            self.audit.start()

    async def _ready_when_synced(self) -> None:
        assert self.watcher is not None
        assert self.health_gate is not None
        await self.watcher.synced.wait()
        log.info(
            "deployed versions applied: ready",
            extra={"fields": {"event": "ready", "revision": self.watcher.revision}},
        )
        await self.health_gate.refresh()

    async def start(self) -> None:
        """Start the server and the deployment watcher (for tests and embedding)."""
        await self.prepare()
        self.start_background()
        await self.runtime.start()

    async def close(self) -> None:
        """Release everything but the gRPC server (stopped first by its owner)."""
        self.service.shutting_down()
        if self._readiness is not None:
            self._readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness
            self._readiness = None
        if self.watcher is not None:
            await self.watcher.close()
        await self.repository.close()
        await self.source.close()
        if self.events is not None:
            await self.events.close()  # one last flush, bounded
        if self.audit is not None:
            await self.audit.close()
        if self.monitor_sink is not None:
            await self.monitor_sink.close()

    async def stop(self, grace: float | None = None) -> None:
        self.service.shutting_down()
        await self.runtime.stop(grace)
        await self.close()


async def serve(settings: InferenceSettings) -> None:
    provider = setup_tracing("modelhub-inference")
    app = InferenceApp(settings, tracer_provider=provider)
    await app.prepare()
    app.start_background()
    try:
        await serve_until_signalled(app.runtime, cleanup=app.close)
    finally:
        shutdown_tracing()


def main() -> int:
    settings = InferenceSettings()
    setup_logging("inference", settings.log.level, settings.log.format)
    if settings.workers > 1:
        from modelhub.inference.workers import supervise

        return supervise(settings)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
