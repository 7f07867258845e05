"""The server interceptor every service runs at its edge: authentication and authorization,
domain errors → gRPC status (through `modelhub.common.status`), and per-RPC Prometheus
metrics. Handlers stay free of transport concerns: they raise domain exceptions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from modelhub.common import errors
from modelhub.common.auth import Authenticator, Role
from modelhub.common.status import abort, code_for_exception, code_of

log = logging.getLogger("modelhub.rpc")

# Services every caller may use without credentials: health checks and reflection.
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

# Latency histogram buckets (seconds) shared by every ModelHub request-duration metric.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class RpcMetrics:
    """gRPC server metrics in Prometheus conventions (one registry per server)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "modelhub_grpc_server_handled_total",
            "RPCs completed on the server, by method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "modelhub_grpc_server_handling_seconds",
            "Time from the start of an RPC to its end on the server.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


def _as_domain_error(exc: BaseException, method: str) -> errors.ModelHubError:
    if isinstance(exc, errors.ModelHubError):
        return exc
    log.exception("unhandled error in %s", method, exc_info=exc)
    return errors.InternalError(f"internal error in {method}: {type(exc).__name__}")


class _MethodMetrics:
    """One method's metric children, resolved once (a labels() lookup per call is not free
    on the hot path)."""

    __slots__ = ("_by_code", "_handled", "_labels", "duration")

    def __init__(self, metrics: RpcMetrics, service: str, method: str) -> None:
        self._handled = metrics.handled
        self._labels = (service, method)
        self.duration = metrics.duration.labels(service, method)
        self._by_code = {"OK": metrics.handled.labels(service, method, "OK")}

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._by_code.get(code.name)
        if child is None:
            child = self._by_code[code.name] = self._handled.labels(*self._labels, code.name)
        return child


class _Call:
    """Bookkeeping for one RPC: when it started, and where its metrics go."""

    __slots__ = ("metrics", "start")

    def __init__(self, metrics: _MethodMetrics | None) -> None:
        self.metrics = metrics
        self.start = time.perf_counter()

    def done(self, code: grpc.StatusCode) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        metrics.handled(code).inc()
        metrics.duration.observe(time.perf_counter() - self.start)


def _code_of(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    try:
        code = context.code()
    except Exception:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    return default


async def _on_error(
    context: grpc.aio.ServicerContext, exc: BaseException, call: _Call, method: str
) -> None:
    """End a failed call: cancellation and aborts propagate as they are; anything else is
    mapped to its status (unexpected exceptions as INTERNAL) and aborts the call."""
    if isinstance(exc, grpc.aio.AbortError):
        call.done(_code_of(context, grpc.StatusCode.UNKNOWN))
        raise exc
    call.done(code_for_exception(exc))
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        raise exc
    await abort(context, _as_domain_error(exc, method))


# The behaviours of the four kinds of RPC (grpc's handler attributes), unwrapped and wrapped.
_Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
_Streaming = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def _wrap_unary_unary(inner: _Unary, method: str, metrics: _MethodMetrics | None) -> _Unary:
    async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(metrics)
        try:
            response = await inner(request, context)
        except BaseException as exc:
            await _on_error(context, exc, call, method)
        call.done(_code_of(context, grpc.StatusCode.OK) or grpc.StatusCode.OK)
        return response

    return unary_unary


def _wrap_unary_stream(
    inner: _Streaming, method: str, metrics: _MethodMetrics | None
) -> _Streaming:
    async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(metrics)
        try:
            async for item in inner(request, context):
                yield item
        except BaseException as exc:
            await _on_error(context, exc, call, method)
        call.done(grpc.StatusCode.OK)

    return unary_stream


def _wrap_stream_unary(inner: _Unary, method: str, metrics: _MethodMetrics | None) -> _Unary:
    async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        call = _Call(metrics)
        try:
            response = await inner(requests, context)
        except BaseException as exc:
            await _on_error(context, exc, call, method)
        call.done(grpc.StatusCode.OK)
        return response

    return stream_unary


def _wrap_stream_stream(
    inner: _Streaming, method: str, metrics: _MethodMetrics | None
) -> _Streaming:
    async def stream_stream(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        call = _Call(metrics)
        try:
            async for item in inner(requests, context):
                yield item
        except BaseException as exc:
            await _on_error(context, exc, call, method)
        call.done(grpc.StatusCode.OK)

    return stream_stream


def _wrap_handler(
    handler: grpc.RpcMethodHandler, method: str, metrics: RpcMetrics | None
) -> grpc.RpcMethodHandler:
    _, _, tail = method.partition("/")
    service, _, name = tail.partition("/")
    method_metrics = _MethodMetrics(metrics, service, name) if metrics is not None else None
    if handler.unary_unary is not None:
        return handler._replace(
            unary_unary=_wrap_unary_unary(handler.unary_unary, method, method_metrics)
        )
    if handler.unary_stream is not None:
        return handler._replace(
            unary_stream=_wrap_unary_stream(handler.unary_stream, method, method_metrics)
        )
    if handler.stream_unary is not None:
        return handler._replace(
            stream_unary=_wrap_stream_unary(handler.stream_unary, method, method_metrics)
        )
    if handler.stream_stream is not None:
        return handler._replace(
            stream_stream=_wrap_stream_stream(handler.stream_stream, method, method_metrics)
        )
    return handler


def _deny_handler(handler: grpc.RpcMethodHandler, error: errors.ModelHubError) -> Any:
    """A handler of the same kind as `handler` that fails every call with `error`."""

    async def deny_unary(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    async def deny_stream(_request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await abort(context, error)
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_unary is not None:
        return handler._replace(unary_unary=deny_unary)
    if handler.unary_stream is not None:
        return handler._replace(unary_stream=deny_stream)
    if handler.stream_unary is not None:
        return handler._replace(stream_unary=deny_unary)
    return handler._replace(stream_stream=deny_stream)


def required_role(method: str, roles: Mapping[str, Role]) -> Role:
    """The role an RPC needs: its entry in `roles` (keyed by bare method name), else ADMIN."""
    return roles.get(method.rsplit("/", 1)[-1], Role.ADMIN)


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Authentication, authorization, error mapping and RPC metrics for one server."""

    def __init__(
        self,
        authenticator: Authenticator,
        roles: Mapping[str, Role],
        metrics: RpcMetrics | None = None,
    ) -> None:
        self._auth = authenticator
        self._roles = roles
        self._metrics = metrics
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if self._auth.enabled:
            header = None
            for key, value in handler_call_details.invocation_metadata or ():
                if key == "authorization":
                    header = value if isinstance(value, str) else value.decode()
                    break
            try:
                principal = self._auth.authenticate(header)
                self._auth.authorize(principal, required_role(method, self._roles), method)
            except errors.ModelHubError as exc:
                if self._metrics is not None:
                    _, _, tail = method.partition("/")
                    service, _, name = tail.partition("/")
                    self._metrics.handled.labels(service, name, code_of(exc).name).inc()
                return _deny_handler(handler, exc)
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = _wrap_handler(handler, method, self._metrics)
        return wrapped
