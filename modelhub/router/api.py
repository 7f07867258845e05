"""gRPC servicers of the router: `modelhub.router.v1.RouterService` (introspection and
outcomes) and `inference.GRPCInferenceService` (the Open Inference Protocol, served like an
inference server: a client cannot tell the difference)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

from modelhub import __version__
from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.common.auth import Role
from modelhub.common.errors import InvalidArgumentError, NotFoundError, UnavailableError
from modelhub.router import convert
from modelhub.router.events import EventPipeline, Outcome
from modelhub.router.forward import Connection, DataPlane
from modelhub.router.outcomes import OutcomeIndex
from modelhub.router.routing import Router
from modelhub.router.stats import RouterCounters
from modelhub.router.table import Target

SERVICE_NAME = "modelhub.router.v1.RouterService"
INFERENCE_SERVICE_NAME = "inference.GRPCInferenceService"
SERVER_NAME = "modelhub-router"
# The router forwards what the inference servers support.
EXTENSIONS = ["parameters"]
OUTCOME_KINDS = ("conversion", "reward", "label")

ROLES: dict[str, Role] = {
    # Inference: the same roles as on an inference server.
    "ServerLive": Role.READER,
    "ServerReady": Role.READER,
    "ServerMetadata": Role.READER,
    "ModelReady": Role.READER,
    "ModelMetadata": Role.READER,
    "ModelInfer": Role.READER,
    # Introspection.
    "GetRoutingTable": Role.READER,
    "ExplainRoute": Role.READER,
    "GetRouterStats": Role.READER,
    # Outcomes come from the applications that call inference, with the same token.
    "RecordOutcome": Role.READER,
}

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Routing table, explanations, outcomes and counters."""

    def __init__(
        self,
        router: Router,
        counters: RouterCounters,
        outcomes: OutcomeIndex | None,
        events: EventPipeline | None,
    ) -> None:
        self._router = router
        self._counters = counters
        self._outcomes = outcomes
        self._events = events

    async def GetRoutingTable(
        self, request: pb.GetRoutingTableRequest, context: Context
    ) -> pb.RoutingTable:
        return convert.table_to_pb(self._router.table)

    async def ExplainRoute(
        self, request: pb.ExplainRouteRequest, context: Context
    ) -> pb.ExplainRouteResponse:
        return convert.explanation_to_pb(self._router.explain(request.endpoint, request.key))

    async def RecordOutcome(
        self, request: pb.RecordOutcomeRequest, context: Context
    ) -> pb.RecordOutcomeResponse:
        if not request.request_id:
            raise InvalidArgumentError("request_id is required", field="request_id")
        if not math.isfinite(request.value):
            raise InvalidArgumentError(f"value must be finite, got {request.value}", field="value")
        kind = request.kind or "conversion"
        if kind not in OUTCOME_KINDS:
            raise InvalidArgumentError(
                f"kind must be one of {', '.join(OUTCOME_KINDS)}; got {kind!r}", field="kind"
            )
        served = self._outcomes.lookup(request.request_id) if self._outcomes else None
        response = pb.RecordOutcomeResponse(attributed=served is not None)
        if served is None:
            self._counters.outcomes_unattributed += 1
        else:
            self._counters.outcomes_attributed += 1
            response.endpoint = served.endpoint
            response.variant = served.variant
            response.model = f"models/{served.model}"
            response.version = served.version
        if self._events is not None:
            # Forwarded even when unknown here: another router replica may have served the
            # request, and the monitor joins outcomes from every replica's events.
            response.forwarded = self._events.add_outcome(
                Outcome(request.request_id, request.value, kind, time.time())
            )
        return response

    async def GetRouterStats(
        self, request: pb.GetRouterStatsRequest, context: Context
    ) -> pb.RouterStats:
        events = self._events
        return convert.stats_to_pb(
            self._counters,
            revision=self._router.table.revision,
            events_sent=events.sent if events else 0,
            events_dropped=events.dropped if events else 0,
            events_buffered=events.buffered if events else 0,
            outcomes_dropped=events.outcomes_dropped if events else 0,
        )


def _no_key(_sticky: Any) -> None:
    return None


class InferenceServicer:
    """The Open Inference Protocol on the router. ModelInfer is the raw-bytes data path
    (`DataPlane`); the other methods are answered from the routing table or forwarded to a
    healthy backend of the route."""

    def __init__(
        self,
        router: Router,
        data_plane: DataPlane,
        ready: Callable[[], bool],
        timeout_s: float = 10.0,
    ) -> None:
        self._router = router
        self._data_plane = data_plane
        self._ready = ready
        self._timeout = timeout_s
        self.ModelInfer = data_plane.model_infer

    async def ServerLive(self, request: opb.ServerLiveRequest, context: Context) -> Any:
        return opb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: opb.ServerReadyRequest, context: Context) -> Any:
        return opb.ServerReadyResponse(ready=self._ready())

    async def ServerMetadata(self, request: opb.ServerMetadataRequest, context: Context) -> Any:
        return opb.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__, extensions=EXTENSIONS
        )

    def _targets(self, name: str, version: str) -> list[Target]:
        """What a request for `name` may reach: every weighted variant of an endpoint, or
        the one version of a model."""
        table = self._router.table
        endpoint = None if version else table.endpoints.get(name.removeprefix("endpoints/"))
        if endpoint is not None:
            targets = []
            for variant in endpoint.variants:
                if variant.spec.weight <= 0:
                    continue
                if variant.target is None:
                    raise UnavailableError(
                        f"variant {variant.spec.name!r} of {endpoint.name} resolves to no "
                        "READY version",
                        reason="VARIANT_UNRESOLVED",
                    )
                targets.append(variant.target)
            return targets
        return [self._router.route(name, version, _no_key).target]

    def _connection(self, target: Target) -> Connection:
        backend = target.pool.pick()
        if backend is None:
            raise UnavailableError(
                f"no healthy backend for models/{target.model} "
                f"(pool: {', '.join(target.pool.addresses)})",
                reason="NO_HEALTHY_BACKEND",
            )
        connection: Connection = backend.connection
        return connection

    async def ModelReady(self, request: opb.ModelReadyRequest, context: Context) -> Any:
        try:
            targets = self._targets(request.name, request.version)
        except (NotFoundError, UnavailableError):
            return opb.ModelReadyResponse(ready=False)
        for target in targets:
            try:
                answer = await self._connection(target).oip.ModelReady(
                    opb.ModelReadyRequest(name=target.model, version=str(target.version)),
                    timeout=self._remaining(context),
                )
            except (grpc.aio.AioRpcError, UnavailableError):
                return opb.ModelReadyResponse(ready=False)
            if not answer.ready:
                return opb.ModelReadyResponse(ready=False)
        return opb.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request: opb.ModelMetadataRequest, context: Context) -> Any:
        targets = self._targets(request.name, request.version)
        if not targets:
            raise UnavailableError(
                f"{request.name!r} has no variant with a positive weight",
                reason="VARIANT_UNRESOLVED",
            )
        # An endpoint's variants share a signature (that is what makes them variants):
        # the first one describes the endpoint.
        target = targets[0]
        try:
            answer = await self._connection(target).oip.ModelMetadata(
                opb.ModelMetadataRequest(name=target.model, version=str(target.version)),
                timeout=self._remaining(context),
            )
        except grpc.aio.AioRpcError as exc:
            await context.abort(
                exc.code(), exc.details() or "", trailing_metadata=exc.trailing_metadata()
            )
        if target.endpoint:
            answer.name = request.name
        return answer

    def _remaining(self, context: Context) -> float:
        remaining = context.time_remaining()
        return self._timeout if remaining is None else min(remaining, self._timeout)


def add_inference_to_server(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Register the OIP service with ModelInfer taking and returning raw bytes (no
    (de)serializer), the other methods as generated."""
    handlers = {
        "ServerLive": grpc.unary_unary_rpc_method_handler(
            servicer.ServerLive,
            request_deserializer=opb.ServerLiveRequest.FromString,
            response_serializer=opb.ServerLiveResponse.SerializeToString,
        ),
        "ServerReady": grpc.unary_unary_rpc_method_handler(
            servicer.ServerReady,
            request_deserializer=opb.ServerReadyRequest.FromString,
            response_serializer=opb.ServerReadyResponse.SerializeToString,
        ),
        "ModelReady": grpc.unary_unary_rpc_method_handler(
            servicer.ModelReady,
            request_deserializer=opb.ModelReadyRequest.FromString,
            response_serializer=opb.ModelReadyResponse.SerializeToString,
        ),
        "ServerMetadata": grpc.unary_unary_rpc_method_handler(
            servicer.ServerMetadata,
            request_deserializer=opb.ServerMetadataRequest.FromString,
            response_serializer=opb.ServerMetadataResponse.SerializeToString,
        ),
        "ModelMetadata": grpc.unary_unary_rpc_method_handler(
            servicer.ModelMetadata,
            request_deserializer=opb.ModelMetadataRequest.FromString,
            response_serializer=opb.ModelMetadataResponse.SerializeToString,
        ),
        "ModelInfer": grpc.unary_unary_rpc_method_handler(servicer.ModelInfer),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(INFERENCE_SERVICE_NAME, handlers),)
    )
    server.add_registered_method_handlers(INFERENCE_SERVICE_NAME, handlers)


def add_router_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
