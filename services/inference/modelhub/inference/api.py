"""`inference.GRPCInferenceService` (Open Inference Protocol / KServe v2) servicer:
protobuf → `InferenceService` → protobuf, and the per-request duration metric."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import grpc
from opentelemetry import trace

from modelhub.api.oip import grpc_predict_v2_pb2 as pb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelhub.common.auth import Authenticator, Role
from modelhub.common.errors import InvalidArgumentError, ModelHubError, NotFoundError
from modelhub.common.status import code_for_exception
from modelhub.inference import convert, repository_api, routing
from modelhub.inference.audit import AuditPolicy, RequestAuditor
from modelhub.inference.metrics import InferenceMetrics
from modelhub.inference.reporting import RequestReporter
from modelhub.inference.request import InferRequest, InferResult
from modelhub.inference.routing import DIRECT, Route
from modelhub.inference.service import InferenceService

SERVICE_NAME = "inference.GRPCInferenceService"

log = logging.getLogger("modelhub.inference.api")

ROLES: dict[str, Role] = {
    "ServerLive": Role.READER,
    "ServerReady": Role.READER,
    "ServerMetadata": Role.READER,
    "ModelReady": Role.READER,
    "ModelMetadata": Role.READER,
    "ModelInfer": Role.READER,
    "ModelStreamInfer": Role.READER,
    "RepositoryIndex": Role.READER,
    "ModelStatistics": Role.READER,
    "ModelConfig": Role.READER,
    # RepositoryModelLoad and RepositoryModelUnload: ADMIN (not listed).
}

# Loading a version on demand takes what loading it explicitly takes.
LOAD_ROLE = repository_api.ROLES["LoadModel"]

# Messages of one ModelStreamInfer stream running at once.
STREAM_WINDOW = 256


def _failure_message(exc: BaseException, code: grpc.StatusCode) -> str:
    """What the request report says of a failed call (its status code is `code`)."""
    if isinstance(exc, ModelHubError):
        return exc.message
    if code is grpc.StatusCode.CANCELLED:
        return "the call was cancelled"
    return f"internal error: {type(exc).__name__}"


def route_of(context: grpc.aio.ServicerContext) -> Route:
    """The routing headers Envoy set (docs/data-plane.md), as a domain `Route`."""
    metadata = context.invocation_metadata()
    if not metadata:
        return DIRECT
    headers = {key: value for key, value in metadata if key in routing.HEADERS}
    if not headers:
        return DIRECT
    return routing.parse_route(headers)


def _decoder(request: pb.ModelInferRequest, max_request_bytes: int) -> Callable[[], InferRequest]:
    return functools.partial(convert.infer_request, request, max_request_bytes)


def _trace_id(span: trace.Span) -> str:
    """The request's W3C trace id (32 hex digits) when it has a trace context, else ""."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _traceparent(span: trace.Span) -> str:
    """The span as a W3C traceparent when it is sampled (recorded), else ""."""
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Thin edge over `InferenceService`; errors are domain exceptions that the edge
    interceptor maps to status codes."""

    def __init__(
        self,
        service: InferenceService,
        metrics: InferenceMetrics,
        max_request_bytes: int,
        reporter: RequestReporter | None = None,
        auditor: RequestAuditor | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._max_request_bytes = max_request_bytes
        self._reporter = reporter
        self._auditor = auditor
        # Names the caller in audit records (the edge interceptor already checked it).
        self._authenticator = authenticator or Authenticator({})

    def may_load(self, context: grpc.aio.ServicerContext) -> bool:
        """Whether this call may load a version on demand: its caller has the role that
        LoadModel needs (always, with authentication off)."""
        if not self._authenticator.enabled:
            return True
        try:
            principal = self._authenticator.authenticate(_authorization(context))
        except ModelHubError:
            return False
        return principal.role >= LOAD_ROLE

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._service.ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        service = self._service
        return pb.ServerMetadataResponse(
            name=service.name, version=service.version, extensions=service.extensions
        )

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            model, version = routing.model_reference(
                request.name, request.version, route_of(context)
            )
        except NotFoundError:
            return pb.ModelReadyResponse(ready=False)
        ready = await self._service.model_ready(model, version)
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model, version = routing.model_reference(request.name, request.version, route_of(context))
        description = await self._service.model_metadata(
            model, version, may_load=self.may_load(context)
        )
        if description.name != request.name:
            description = replace(description, name=request.name)
        return convert.model_metadata(description)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        model, version = routing.model_reference(request.name, request.version, route_of(context))
        config = await self._service.model_config(model, version, may_load=self.may_load(context))
        if config.name != request.name:
            config = replace(config, name=request.name)
        return convert.model_config(config)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        served = self._service.statistics(request.name, request.version)
        return pb.ModelStatisticsResponse(
            model_stats=[convert.triton_statistics(s) for s in served]
        )

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        entries = self._service.index(request.ready)
        return pb.RepositoryIndexResponse(models=[convert.triton_index_entry(e) for e in entries])

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        if request.parameters:
            raise InvalidArgumentError(
                f"load parameters are not supported (got {', '.join(sorted(request.parameters))})"
                "; use modelhub.inference.v1.ModelRepositoryService/LoadModel for settings",
                field="parameters",
            )
        await self._service.load_model(request.model_name, "")
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self._service.unload_model_versions(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        route = route_of(context)
        try:
            result, labels = await self.infer(
                context, route, _decoder(request, self._max_request_bytes), request.id
            )
            context.set_trailing_metadata(tuple((routing.TRAILERS[k], v) for k, v in labels))
            return self._response(request, result, labels, route.request_id)
        finally:
            # This frame outlives the call in an exception's traceback: keep no data in it.
            del request

    async def ModelStreamInfer(
        self,
        requests: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each message runs like a unary ModelInfer (batched with every other request)
        and is answered as soon as it completes, so answers may come out of order; a
        failed message answers `error_message` and the stream goes on."""
        route = route_of(context)
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()
        # Messages in flight per stream: past this the stream is not read (flow control
        # pushes back on the client) instead of queueing without bound.
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def run(request: pb.ModelInferRequest, sequence: int) -> None:
            message_route = routing.message_route(route, request.model_name, sequence)
            try:
                result, labels = await self.infer(
                    context,
                    message_route,
                    _decoder(request, self._max_request_bytes),
                    request.id,
                )
                response = self._response(request, result, labels, message_route.request_id)
                answers.put_nowait(pb.ModelStreamInferResponse(infer_response=response))
            except ModelHubError as exc:
                answers.put_nowait(
                    pb.ModelStreamInferResponse(
                        error_message=f"{code_for_exception(exc).name}: {exc}",
                        infer_response=pb.ModelInferResponse(
                            id=request.id,
                            model_name=request.model_name,
                            model_version=request.model_version,
                        ),
                    )
                )
            finally:
                window.release()
                del request

        async def read() -> None:
            sequence = 0
            try:
                async for request in requests:
                    await window.acquire()
                    task = asyncio.ensure_future(run(request, sequence))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    sequence += 1
            finally:
                if pending:
                    await asyncio.wait(set(pending))
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await reader  # its error (e.g. a malformed message) ends the stream
        finally:
            if not reader.done():
                reader.cancel()
            for task in list(pending):
                task.cancel()

    def _response(
        self,
        request: pb.ModelInferRequest,
        result: InferResult,
        labels: list[tuple[str, str]],
        request_id: str,
    ) -> pb.ModelInferResponse:
        response = convert.infer_response(request, result, labels)
        if not response.id and request_id:
            # The id the request is known by (Envoy's x-request-id): what outcomes and
            # the monitor's events refer to.
            response.id = request_id
        return response

    async def infer(
        self,
        context: grpc.aio.ServicerContext,
        route: Route,
        decode: Callable[[], InferRequest],
        request_id: str,
    ) -> tuple[InferResult, list[tuple[str, str]]]:
        """One inference call whatever the protocol (gRPC unary or stream, REST): decode,
        apply Envoy's routing decision, run, and count and report it. Returns the result
        and the (parameter, value) pairs naming what served it."""
        start = time.perf_counter()
        model = version = ""  # requests that never reached a version are counted unlabelled
        code = grpc.StatusCode.OK
        message = ""
        domain: InferRequest | None = None
        result: InferResult | None = None
        span = trace.get_current_span()
        try:
            domain = decode()
            domain.model, domain.version = routing.model_reference(
                domain.model, domain.version, route
            )
            if route.shadow:
                domain.background = True
            result = await self._service.infer(
                domain,
                context.time_remaining(),
                span.get_span_context(),
                may_load=self.may_load(context),
            )
            model, version = result.model, str(result.version)
            if span.is_recording():
                span.set_attribute("modelhub.model", model)
                span.set_attribute("modelhub.version", version)
            return result, routing.served_labels(route, result.model, result.version)
        except BaseException as exc:
            code = code_for_exception(exc)
            message = _failure_message(exc, code)
            if not isinstance(exc, ModelHubError):
                raise
            if domain is not None and domain.served_version is not None:
                model, version = domain.model, str(domain.served_version)
            # Without the frames it came through (convert's copies of the raw contents, the
            # batcher's arrays): gRPC keeps the last call's exception for a while, and a
            # refused request must not keep its data with it. Its status says what failed.
            raise exc.with_traceback(None)  # noqa: B904 - the same exception, re-raised
        finally:
            latency = time.perf_counter() - start
            # Only an endpoint's variants label the histogram, bounded in number and
            # checked against the variant name rules (the headers reach this port
            # unchecked when a client calls it directly).
            if route.routed:
                self._metrics.observe_request(
                    model, version, route.variant, code.name, latency, route.endpoint
                )
            else:
                self._metrics.observe_request(model, version, "", code.name, latency)
            reporter = self._reporter
            if reporter is not None and version:
                reporter.report(
                    route,
                    request_id or (domain.id if domain is not None else ""),
                    time.time() - latency,
                    latency,
                    model,
                    int(version),
                    code.value[0],
                    domain.inputs[0].data if domain is not None and domain.inputs else None,
                    result.outputs[0].data if result is not None and result.outputs else None,
                    _traceparent(span),
                )
            auditor = self._auditor
            if auditor is not None and route.endpoint:
                policy = auditor.sampled(route)
                if policy is not None:
                    self._audit(
                        auditor,
                        policy,
                        context,
                        route,
                        span,
                        request_id or (domain.id if domain is not None else ""),
                        latency,
                        model,
                        version,
                        code,
                        message,
                        domain,
                        result,
                    )
            # This frame outlives the call in an exception's traceback: keep no data in it.
            del domain, result, decode

    def _audit(
        self,
        auditor: RequestAuditor,
        policy: AuditPolicy,
        context: grpc.aio.ServicerContext,
        route: Route,
        span: trace.Span,
        request_id: str,
        latency: float,
        model: str,
        version: str,
        code: grpc.StatusCode,
        message: str,
        domain: InferRequest | None,
        result: InferResult | None,
    ) -> None:
        """Queue the audit record of a sampled request (bounded work, never waits). A
        record that cannot be built is logged and left out: it never fails the request."""
        try:
            try:
                principal = self._authenticator.authenticate(_authorization(context))
                caller, role = principal.name, principal.role.name.lower()
            except ModelHubError:  # the edge let it through: an anonymous role
                caller, role = "anonymous", ""
            auditor.record(
                policy,
                route,
                request_id=request_id,
                arrival=time.time() - latency,
                latency_s=latency,
                model=model,
                version=int(version) if version else 0,
                status_code=code.value[0],
                status_message=message,
                caller=caller,
                caller_role=role,
                trace_id=_trace_id(span),
                inputs=domain.inputs if domain is not None else (),
                outputs=result.outputs if result is not None else (),
            )
        except Exception:
            log.exception("could not build the audit record of request %r", request_id)
