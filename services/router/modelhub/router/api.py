"""gRPC servicer of the router: `modelhub.router.v1.RouterService` — the routing table it
wrote for Envoy, explanations, outcomes, the inference fleet and its own counters.
Inference traffic does not pass through the router: Envoy carries it (see `xds`).

A thin edge: messages in, a domain call (`routing`, `outcomes`, `fleet`), messages out;
the domain raises `modelhub.common.errors`, which `modelhub.common.status` maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import grpc

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.common.auth import Role
from modelhub.router import convert
from modelhub.router.fleet import Fleet
from modelhub.router.outcomes import OutcomeForwarder
from modelhub.router.routing import Router
from modelhub.router.xds import ConfigWriter

SERVICE_NAME = "modelhub.router.v1.RouterService"

ROLES: dict[str, Role] = {
    "GetRoutingTable": Role.READER,
    "ExplainRoute": Role.READER,
    "GetRouterStats": Role.READER,
    "ListReplicas": Role.READER,
    # Outcomes come from the applications that call inference, with the same token.
    "RecordOutcome": Role.READER,
}

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Routing table, explanations, outcomes, the fleet and counters."""

    def __init__(
        self,
        router: Router,
        writer: ConfigWriter,
        outcomes: OutcomeForwarder,
        fleet: Fleet[ipb.ModelIndexEntry],
        default_pool: Callable[[], Sequence[str]],
    ) -> None:
        self._router = router
        self._writer = writer
        self._outcomes = outcomes
        self._fleet = fleet
        self._default_pool = default_pool

    async def GetRoutingTable(
        self, request: pb.GetRoutingTableRequest, context: Context
    ) -> pb.RoutingTable:
        return convert.table_to_pb(self._router.table, self._default_pool())

    async def ExplainRoute(
        self, request: pb.ExplainRouteRequest, context: Context
    ) -> pb.ExplainRouteResponse:
        return convert.explanation_to_pb(self._router.explain(request.endpoint, request.key))

    async def RecordOutcome(
        self, request: pb.RecordOutcomeRequest, context: Context
    ) -> pb.RecordOutcomeResponse:
        attributed = await self._outcomes.record(request.request_id, request.value, request.kind)
        return pb.RecordOutcomeResponse(attributed=attributed, forwarded=True)

    async def ListReplicas(
        self, request: pb.ListReplicasRequest, context: Context
    ) -> pb.ListReplicasResponse:
        replicas = await self._fleet.replicas(
            request.model, request.version, deadline_s=context.time_remaining()
        )
        return pb.ListReplicasResponse(replicas=[convert.replica_to_pb(r) for r in replicas])

    async def GetRouterStats(
        self, request: pb.GetRouterStatsRequest, context: Context
    ) -> pb.RouterStats:
        return pb.RouterStats(
            revision=self._router.table.revision,
            config_writes=self._writer.writes,
            config_write_errors=self._writer.errors,
            config_dir=str(self._writer.directory),
            outcomes_attributed=self._outcomes.counts.attributed,
            outcomes_unattributed=self._outcomes.counts.unattributed,
        )


def add_router_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
