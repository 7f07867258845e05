"""The router's data path over gRPC: ModelInfer bytes in, bytes out.

The router's ModelInfer handler is registered without a deserializer: it receives the
request bytes, reads the four fields routing needs (`wire.scan_request`, which skips the
tensors without copying them), and forwards the same bytes with the target's
`model_name`/`model_version` appended (the last occurrence of a field wins). The backend's
response bytes come back without a deserializer too, and the router appends its
`modelhub.*` response parameters. Tensors are never decoded or re-encoded on this path;
shadow comparisons and drift samples decode them later, off the request path.

One channel per backend address, created once and shared by every request. The client
interceptors of the OpenTelemetry gRPC instrumentation propagate the trace context; the
caller's remaining deadline becomes the backend call's timeout.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.common import telemetry
from modelhub.common.errors import ModelHubError, UnavailableError
from modelhub.common.server import channel_options
from modelhub.common.status import status_code_for
from modelhub.router import wire
from modelhub.router.backends import Backend, BackendPool
from modelhub.router.events import Event, EventPipeline
from modelhub.router.mirror import Mirror, MirroredRequest, ShadowAnswer
from modelhub.router.outcomes import OutcomeIndex, Served
from modelhub.router.routing import Decision, Router
from modelhub.router.table import KeySource, StickyKey, Target

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
HEALTH_SERVICE = "inference.GRPCInferenceService"

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_OK_CODE = 0


class Connection:
    """One backend's channels and the callables made on them once.

    Two channels: a plain one, and one with OpenTelemetry's client instrumentation, made
    on first use. A call goes through the instrumented one only when there is a trace to
    continue (a recording process, or a request that arrived with a trace context): the
    instrumentation's interceptor machinery costs a task and several hundred microseconds
    of CPU per call, which an untraced call would pay for nothing.
    """

    __slots__ = ("_address", "_options", "_traced", "channel", "health", "infer", "oip")

    def __init__(self, address: str, max_message_bytes: int) -> None:
        self._address = address
        self._options = channel_options(max_message_bytes)
        self.channel = grpc.aio.insecure_channel(address, options=self._options)
        # Bytes in, bytes out: no serializer on either side.
        self.infer = self.channel.unary_unary(INFER_METHOD, _registered_method=True)
        self.oip = opb_grpc.GRPCInferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self._traced: tuple[grpc.aio.Channel, Any] | None = None

    def infer_call(self) -> Any:
        """The ModelInfer callable for the current call: instrumented when it is traced."""
        if not (telemetry.recording() or trace.get_current_span().get_span_context().is_valid):
            return self.infer
        if self._traced is None:
            channel = grpc.aio.insecure_channel(
                self._address, options=self._options, interceptors=aio_client_interceptors()
            )
            self._traced = (channel, channel.unary_unary(INFER_METHOD, _registered_method=True))
        return self._traced[1]

    async def close(self, grace_s: float | None = None) -> None:
        await self.channel.close(grace_s)
        if self._traced is not None:
            await self._traced[0].close(grace_s)


def connector(max_message_bytes: int) -> Callable[[str], Connection]:
    def connect(address: str) -> Connection:
        return Connection(address, max_message_bytes)

    return connect


async def disconnect(connection: Any) -> None:
    # Let calls already on the channel finish: the table that used it was just replaced.
    await connection.close(5.0)


def readiness_prober(timeout_s: float) -> Callable[[BackendPool, str, int], Any]:
    """A readiness probe: `ModelReady` of a version on one healthy backend of a pool."""

    async def probe(pool: BackendPool, model: str, version: int) -> bool:
        backend = pool.pick()
        if backend is None:
            return False
        connection: Connection = backend.connection
        try:
            reply = await connection.oip.ModelReady(
                opb.ModelReadyRequest(name=model, version=str(version)), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.ready)

    return probe


def prober(timeout_s: float) -> Callable[[Backend], Any]:
    """A health probe: grpc.health.v1 Check of the inference service on the backend."""

    async def probe(backend: Backend) -> bool:
        connection: Connection = backend.connection
        try:
            response = await connection.health.Check(
                health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            # A server without health checking (or without that service name) is alive.
            return exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND)
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def transport_failure(exc: grpc.aio.AioRpcError) -> bool:
    """UNAVAILABLE raised by gRPC itself because the backend did not answer at all
    (connection refused or reset): only then is the backend itself unhealthy.

    A backend that answered UNAVAILABLE sent metadata with it: the inference service's
    error payload (model still loading), or a proxy's headers (Envoy in front of inference
    replicas answering that one replica failed). Marking such a backend down would turn
    one replica's failure into a failure of everything behind the proxy."""
    if exc.code() != _UNAVAILABLE:
        return False
    return not tuple(exc.trailing_metadata() or ())


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() == _UNAVAILABLE
    return isinstance(exc, UnavailableError)


def status_code_of(exc: BaseException) -> int:
    if isinstance(exc, grpc.aio.AioRpcError):
        return int(exc.code().value[0])
    if isinstance(exc, ModelHubError):
        code = status_code_for(type(exc)) or grpc.StatusCode.INTERNAL
        return int(code.value[0])
    if isinstance(exc, asyncio.CancelledError):
        return int(grpc.StatusCode.CANCELLED.value[0])
    return int(grpc.StatusCode.INTERNAL.value[0])


def _key_lookup(
    header: wire.RequestHeader, context: grpc.aio.ServicerContext
) -> Callable[[StickyKey], str | None]:
    def key_of(sticky: StickyKey) -> str | None:
        if sticky.source is KeySource.PARAMETER:
            return header.parameter(sticky.name)
        for name, value in context.invocation_metadata() or ():
            if name == sticky.name:
                return value if isinstance(value, str) else value.decode(errors="replace")
        return None

    return key_of


class DataPlane:
    """ModelInfer through the router: route, forward, fall back, mirror, record."""

    def __init__(
        self,
        router: Router,
        *,
        mirror: Mirror | None,
        events: EventPipeline | None,
        outcomes: OutcomeIndex | None,
        generate_request_ids: bool,
        event_sample_rate: float,
        backend_metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._router = router
        self._mirror = mirror
        self._events = events
        self._outcomes = outcomes
        self._generate_ids = generate_request_ids
        self._sample_rate = event_sample_rate
        self._metadata = tuple(backend_metadata) or None
        self._random = random.random

    async def _call_pool(
        self,
        target: Target,
        data: bytes,
        context: grpc.aio.ServicerContext,
        dispatched: Callable[[], None] | None,
    ) -> bytes:
        """Call `target` on a healthy backend of its pool. A transport failure marks the
        backend unhealthy and is retried once on another healthy backend (ModelInfer has
        no side effects, and a refused connection never reached the server)."""
        pool = target.pool
        backend = pool.pick()
        retried = False
        while True:
            if backend is None:
                if dispatched is not None:
                    dispatched()
                raise UnavailableError(
                    f"no healthy backend for models/{target.model} version {target.version} "
                    f"(pool: {', '.join(pool.addresses)})",
                    reason="NO_HEALTHY_BACKEND",
                )
            current = backend
            current.requests += 1
            current.in_flight += 1
            try:
                call = current.connection.infer_call()(
                    data, timeout=context.time_remaining(), metadata=self._metadata
                )
                if dispatched is not None:
                    dispatched()
                    dispatched = None
                response: bytes = await call
                return response
            except grpc.aio.AioRpcError as exc:
                if not transport_failure(exc):
                    raise
                current.failures += 1
                current.mark_down(f"{exc.code().name}: {exc.details()}")
                backend = None if retried else pool.pick(exclude=current)
                if backend is None:
                    raise
                retried = True
                target.counters.retries += 1
            finally:
                current.in_flight -= 1

    def _mirror_all(
        self,
        decision: Decision,
        data: bytes,
        primary: asyncio.Future[bytes | None],
        tracker: MirroredRequest,
    ) -> Callable[[], None]:
        mirror = self._mirror
        assert mirror is not None

        def dispatch() -> None:
            for shadow in decision.shadows:
                mirror.submit(shadow, data, primary, tracker)

        return dispatch

    async def model_infer(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        header = wire.scan_request(data)
        decision = self._router.route(
            header.model_name, header.model_version, _key_lookup(header, context)
        )
        target = decision.target
        request_id = header.id
        id_field = b""
        if not request_id and self._generate_ids:
            request_id = os.urandom(12).hex()
            id_field = wire.request_id_field(request_id)
        forward = b"".join((data, id_field, target.request_suffix))

        events = self._events
        event: Event | None = None
        if events is not None:
            event = Event(
                request_id,
                time.time(),
                target.endpoint,
                target.variant,
                target.model,
                target.version,
                key_hash=decision.key_hash(),
                traceparent=_traceparent(),
            )
        primary: asyncio.Future[bytes | None] | None = None
        tracker: MirroredRequest | None = None
        dispatched = None
        if decision.shadows and self._mirror is not None:
            primary = asyncio.get_running_loop().create_future()
            tracker = MirroredRequest(
                event, events.emit if events is not None else _ignore, 1 + len(decision.shadows)
            )
            dispatched = self._mirror_all(decision, forward, primary, tracker)

        counters = target.counters
        counters.requests += 1
        response: bytes | None = None
        served = target
        code = _OK_CODE
        try:
            try:
                response = await self._call_pool(target, forward, context, dispatched)
            except (grpc.aio.AioRpcError, UnavailableError) as exc:
                fallback = decision.fallback
                if fallback is None or not _unavailable(exc):
                    raise
                counters.fallbacks += 1
                served = fallback
                fallback.counters.requests += 1
                # Appended after the primary's suffix: the fallback's model/version win.
                response = await self._call_pool(
                    fallback, forward + fallback.request_suffix, context, None
                )
        except grpc.aio.AioRpcError as exc:
            served.counters.errors += 1
            code = status_code_of(exc)
            # Pass the backend's status through unchanged: code, message, rich details.
            trailers = tuple(exc.trailing_metadata() or ()) + served.trailers
            await context.abort(exc.code(), exc.details() or "", trailing_metadata=trailers)
        except BaseException as exc:
            served.counters.errors += 1
            code = status_code_of(exc)
            raise
        finally:
            if events is not None and event is not None:
                self._finish(event, served, started, code, response, forward)
                if tracker is None:  # else the last mirror to finish emits it
                    events.emit(event)
            if primary is not None:
                primary.set_result(response)
            if tracker is not None:
                tracker.done()
        assert response is not None
        context.set_trailing_metadata(served.trailers)
        if self._outcomes is not None and request_id:
            self._outcomes.remember(
                request_id,
                Served(served.endpoint, served.variant, served.model, served.version, started),
            )
        return response + served.response_suffix

    def _finish(
        self,
        event: Event,
        served: Target,
        started: float,
        code: int,
        response: bytes | None,
        forward: bytes,
    ) -> None:
        event.latency_s = time.perf_counter() - started
        event.status_code = code
        if served.variant != event.variant or served.version != event.version:
            # The fallback served: the event belongs to it.
            event.variant, event.model, event.version = served.variant, served.model, served.version
        if response is not None and self._sample_rate and self._random() < self._sample_rate:
            event.payload = (forward, response)


def _ignore(_event: Event) -> None:
    pass


async def shadow_call(target: Target, data: bytes, timeout_s: float) -> ShadowAnswer:
    """Send a mirror to a healthy backend of the shadow's pool (never retried)."""
    backend = target.pool.pick()
    started = time.perf_counter()
    if backend is None:
        return ShadowAnswer(int(_UNAVAILABLE.value[0]), 0.0)
    backend.requests += 1
    backend.in_flight += 1
    try:
        response = await backend.connection.infer_call()(
            data + target.request_suffix, timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        if transport_failure(exc):
            backend.failures += 1
            backend.mark_down(f"{exc.code().name}: {exc.details()}")
        return ShadowAnswer(int(exc.code().value[0]), time.perf_counter() - started)
    finally:
        backend.in_flight -= 1
    return ShadowAnswer(_OK_CODE, time.perf_counter() - started, response)


def _traceparent() -> str:
    """The current span as a W3C traceparent when it is sampled (recorded), else ""."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
