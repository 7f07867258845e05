"""The async gRPC server bootstrap every service uses.

`ServiceRuntime` wraps a `grpc.aio` server with what every ModelHub service exposes:
`grpc.health.v1` health, server reflection (with the proto comments), OpenTelemetry
instrumentation, the edge interceptor (auth, error mapping, RPC metrics), INVALID_ARGUMENT
for request bytes that are no valid message, and a Prometheus HTTP endpoint.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, start_http_server

from modelhub.common import errors, telemetry
from modelhub.common.auth import Role
from modelhub.common.filestore import atomic_write
from modelhub.common.interceptors import EdgeInterceptor, RpcMetrics
from modelhub.common.reflection import SourceInfoPool, load_descriptor_set
from modelhub.common.settings import ServiceSettings
from modelhub.common.tls import server_credentials

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


class MalformedRequest:
    """What a lenient deserializer returns for bytes that are not a valid `message`: the
    handler refuses it before the servicer (whose signature stays typed) ever sees it."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def error(self) -> errors.InvalidArgumentError:
        return errors.InvalidArgumentError(
            f"the request is not a valid {self.message}: its bytes cannot be parsed as that "
            "protobuf message",
            reason="MALFORMED_MESSAGE",
        )


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    # The generated handlers use `Message.FromString`, bound to the message class.
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


def lenient_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a request deserializer that does not raise on bad bytes (they become a
    `MalformedRequest`) and a behaviour that turns that into `InvalidArgumentError`, which
    the edge interceptor maps like any domain error. Streaming-request methods, whose
    requests arrive through an iterator, are left as they are."""
    deserialize = handler.request_deserializer
    if handler.request_streaming or deserialize is None:
        return handler
    message = _message_name(deserialize)

    def request_deserializer(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return MalformedRequest(message)

    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request.__class__ is MalformedRequest:
                raise request.error()
            return await inner_uu(request, context)

        return handler._replace(request_deserializer=request_deserializer, unary_unary=unary_unary)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            if request.__class__ is MalformedRequest:
                raise request.error()
            async for item in inner_us(request, context):
                yield item

        return handler._replace(
            request_deserializer=request_deserializer, unary_stream=unary_stream
        )
    return handler


class _LenientGenericHandler(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        # Only methods the inner handler serves are remembered (not every name a client sends).
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            inner = self._inner.service(handler_call_details)
            if inner is None:
                return None
            handler = self._handlers[method] = lenient_handler(inner)
        return handler


class LenientDecoding:
    """Stands in for the server while a generated `add_XServicer_to_server` registers its
    handlers, and registers them with lenient request decoding (`lenient_handler`): bytes
    that are not a valid request message are INVALID_ARGUMENT, not gRPC's UNKNOWN
    ("Unexpected DecodeError")."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_LenientGenericHandler(h) for h in handlers])

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name, {name: lenient_handler(h) for name, h in method_handlers.items()}
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


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
        # Who calls: the edge interceptor checks it; a servicer may ask it again (e.g. to
        # name the caller in an audit record).
        self.authenticator = settings.auth.build()
        interceptors: list[grpc.aio.ServerInterceptor] = [
            TracingInterceptor(
                otel, always=telemetry.recording() if trace_all is None else trace_all
            ),
            EdgeInterceptor(self.authenticator, roles, RpcMetrics(self.metrics_registry)),
        ]
        options = [
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # What a service accepts may be less than what it sends (inference: its request
            # size limit), so that gRPC refuses larger requests before they are assembled.
            ("grpc.max_receive_message_length", settings.max_receive_bytes()),
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
        """Register a servicer (`add_fn` is the generated `add_XServicer_to_server`).

        Requests of its unary-request methods that are not valid protobuf are answered
        INVALID_ARGUMENT (see `LenientDecoding`) instead of gRPC's UNKNOWN.
        """
        add_fn(servicer, LenientDecoding(self.server))
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
        names = [
            *self._service_names,
            *self._advertised,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ]
        # Descriptors with their source info: `grpcurl describe` shows the proto comments.
        pool = SourceInfoPool(load_descriptor_set(), names)
        reflection.enable_server_reflection(names, self.server, pool=pool)
        bind = f"{self.settings.host}:{self.settings.port}"
        credentials = server_credentials(self.settings.tls)
        if credentials is None:
            self.port = self.server.add_insecure_port(bind)
        else:
            self.port = self.server.add_secure_port(bind, credentials)
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
    info = {"port": runtime.port, "metrics_port": runtime.metrics_port, "pid": os.getpid()}
    atomic_write(runtime.settings.ready_file, json.dumps(info))


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
