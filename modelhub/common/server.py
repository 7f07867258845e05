"""The async gRPC server bootstrap every service uses.

`ServiceRuntime` wraps a `grpc.aio` server with what every ModelHub service exposes:
`grpc.health.v1` health, server reflection, OpenTelemetry instrumentation, the edge
interceptor (auth, error mapping, RPC metrics) and a Prometheus HTTP endpoint.
`serve_until_signalled` runs it until SIGTERM/SIGINT and shuts down gracefully: health
flips to NOT_SERVING, new calls are refused after the drain delay, in-flight calls get
the grace period to finish, then the service's own cleanup runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, start_http_server

from modelhub.common import telemetry
from modelhub.common.auth import Role
from modelhub.common.interceptors import EdgeInterceptor, RpcMetrics
from modelhub.common.settings import ServiceSettings

log = logging.getLogger("modelhub.server")

AddServicer = Callable[[Any, grpc.aio.Server], None]


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """OpenTelemetry's gRPC server instrumentation, applied only where it can matter.

    When this process records spans, every call is instrumented. When it does not (no
    exporter configured), only calls that arrive with a W3C `traceparent` are, so that the
    trace continues downstream; the others skip the instrumentation, whose per-call cost
    (about a third of a small RPC's server CPU here) would buy nothing.
    """

    def __init__(self, inner: grpc.aio.ServerInterceptor, always: bool) -> None:
        self._inner = inner
        self._always = always

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if self._always:
            return await self._inner.intercept_service(continuation, handler_call_details)
        for key, _ in handler_call_details.invocation_metadata or ():
            if key == "traceparent":
                return await self._inner.intercept_service(continuation, handler_call_details)
        return await continuation(handler_call_details)


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class ServiceRuntime:
    """One service's gRPC server and its standard companions."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        roles: Mapping[str, Role],
        *,
        tracer_provider: TracerProvider | None = None,
        metrics_registry: CollectorRegistry | None = None,
        reuse_port: bool = False,
        trace_all: bool | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.metrics_registry = metrics_registry or CollectorRegistry()
        otel = aio_server_interceptor(
            tracer_provider=tracer_provider, filter_=filters.negate(filters.health_check())
        )
        interceptors: list[grpc.aio.ServerInterceptor] = [
            TracingInterceptor(
                otel, always=telemetry.recording() if trace_all is None else trace_all
            ),
            EdgeInterceptor(settings.auth.build(), roles, RpcMetrics(self.metrics_registry)),
        ]
        options = [
            *channel_options(settings.max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
        self.server = grpc.aio.server(interceptors=interceptors, options=options)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = []
        self._advertised: list[str] = []
        self._metrics_http: Any = None
        self._stop_hooks: list[Callable[[], None]] = []
        self.port = 0
        self.metrics_port = 0

    def add_service(self, full_name: str, add_fn: AddServicer, servicer: Any) -> None:
        """Register a servicer (`add_fn` is the generated `add_XServicer_to_server`)."""
        add_fn(servicer, self.server)
        self._service_names.append(full_name)

    def advertise(self, service_names: list[str]) -> None:
        """List more services in server reflection than this server implements — for a
        server that answers reflection for a whole suite behind one proxy address."""
        self._advertised += [n for n in service_names if n not in self._service_names]

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Run `hook` when stopping begins, e.g. to end long-lived streams so they do not
        hold the shutdown for the whole grace period."""
        self._stop_hooks.append(hook)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> None:
        reflection.enable_server_reflection(
            [*self._service_names, *self._advertised, health.SERVICE_NAME, reflection.SERVICE_NAME],
            self.server,
        )
        bind = f"{self.settings.host}:{self.settings.port}"
        self.port = self.server.add_insecure_port(bind)
        if self.port == 0:
            raise OSError(f"{self.name}: cannot bind gRPC port {bind}")
        await self.server.start()
        if self.settings.metrics_port >= 0:
            self._metrics_http, _ = start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_host,
                registry=self.metrics_registry,
            )
            self.metrics_port = self._metrics_http.server_port
        for service in ["", *self._service_names]:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "%s serving",
            self.name,
            extra={
                "fields": {
                    "event": "started",
                    "address": self.address,
                    "metrics_port": self.metrics_port,
                }
            },
        )

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ["", *self._service_names]:
            await self.health.set(service, status)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, drain delay, refuse new calls, let in-flight finish."""
        grace = self.settings.grace_period_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        if self.settings.drain_delay_s > 0:
            await asyncio.sleep(self.settings.drain_delay_s)
        for hook in self._stop_hooks:
            hook()
        await self.server.stop(grace)
        if self._metrics_http is not None:
            # shutdown() waits for the serving thread's next poll (up to 0.5 s).
            await asyncio.to_thread(self._metrics_http.shutdown)
            self._metrics_http.server_close()
            self._metrics_http = None
        log.info("%s stopped", self.name, extra={"fields": {"event": "stopped"}})


def write_ready_file(runtime: ServiceRuntime) -> None:
    """Atomically write {port, metrics_port, pid} to the configured ready file."""
    path = runtime.settings.ready_file
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(
            {"port": runtime.port, "metrics_port": runtime.metrics_port, "pid": os.getpid()}, fh
        )
    os.replace(tmp, path)


async def serve_until_signalled(
    runtime: ServiceRuntime,
    cleanup: Callable[[], Awaitable[None]] | None = None,
    ready: Callable[[ServiceRuntime], None] | None = None,
) -> None:
    """Start `runtime`, wait for SIGTERM/SIGINT, then stop gracefully and run `cleanup`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    if runtime.settings.ready_file:
        write_ready_file(runtime)
    if ready is not None:
        ready(runtime)
    try:
        await stop.wait()
    finally:
        log.info("%s shutting down", runtime.name, extra={"fields": {"event": "stopping"}})
        await runtime.stop()
        if cleanup is not None:
            await cleanup()


def suite_service_names() -> list[str]:
    """Every ModelHub gRPC service (imports their generated modules, so that reflection can
    describe them)."""
    from modelhub.api.inference.v1 import inference_pb2
    from modelhub.api.monitor.v1 import monitor_pb2
    from modelhub.api.oip import grpc_predict_v2_pb2
    from modelhub.api.registry.v1 import registry_pb2
    from modelhub.api.router.v1 import router_pb2

    return [
        service.full_name
        for module in (grpc_predict_v2_pb2, registry_pb2, inference_pb2, router_pb2, monitor_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    ]
