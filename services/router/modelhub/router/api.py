"""gRPC servicer of the router: `modelhub.router.v1.RouterService` — the routing table it
wrote for Envoy, explanations, outcomes and its own counters. Inference traffic does not
pass through the router: Envoy carries it (see `xds`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import grpc

from modelhub.api.router.v1 import router_pb2 as pb
from modelhub.api.router.v1 import router_pb2_grpc
from modelhub.common.auth import Role
from modelhub.common.errors import FailedPreconditionError
from modelhub.common.monitor_sink import MonitorSink
from modelhub.router import convert, outcomes
from modelhub.router.outcomes import OutcomeCounts
from modelhub.router.routing import Router
from modelhub.router.xds import ConfigWriter

SERVICE_NAME = "modelhub.router.v1.RouterService"

ROLES: dict[str, Role] = {
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
        writer: ConfigWriter,
        monitor: MonitorSink | None,
        default_pool: Callable[[], Sequence[str]],
    ) -> None:
        self._router = router
        self._writer = writer
        self._monitor = monitor
        self._outcomes = OutcomeCounts()
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
        outcome = outcomes.validated(request.request_id, request.value, request.kind)
        if self._monitor is None:
            raise FailedPreconditionError(
                "the router has no monitor to attribute outcomes (set "
                "MODELHUB_ROUTER_MONITOR_ADDRESS), or send them to the monitor's RecordOutcomes",
                reason="NO_MONITOR",
            )
        attributed = await self._monitor.send_outcomes([outcome]) > 0
        self._outcomes.count(attributed)
        return pb.RecordOutcomeResponse(attributed=attributed, forwarded=True)

    async def GetRouterStats(
        self, request: pb.GetRouterStatsRequest, context: Context
    ) -> pb.RouterStats:
        return pb.RouterStats(
            revision=self._router.table.revision,
            config_writes=self._writer.writes,
            config_write_errors=self._writer.errors,
            config_dir=str(self._writer.directory),
            outcomes_attributed=self._outcomes.attributed,
            outcomes_unattributed=self._outcomes.unattributed,
        )


def add_router_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
