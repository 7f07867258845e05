"""The gRPC adapter of the fleet's port (`modelhub.router.fleet.ReplicaProbe`): a replica's
`grpc.health.v1` check and its `ModelRepositoryService.RepositoryIndex`, over the router's
replica channels (`upstream.Replicas`). Failed calls come back as domain errors."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.common.channels import bearer
from modelhub.common.errors import ModelHubError
from modelhub.router.fleet import ReplicaIndex
from modelhub.router.upstream import Replicas


class GrpcReplicaProbe:
    """Asks inference replicas over gRPC, with the router's backend token."""

    def __init__(self, replicas: Replicas, token: str = "") -> None:
        self._replicas = replicas
        self._metadata = bearer(token)

    async def serving(self, address: str, timeout_s: float) -> bool:
        reply = await self._replicas.one(
            address,
            lambda stubs: stubs.health.Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s, metadata=self._metadata
            ),
            "the health check",
        )
        if isinstance(reply, ModelHubError):
            raise reply
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def index(self, address: str, timeout_s: float) -> ReplicaIndex[ipb.ModelIndexEntry]:
        reply = await self._replicas.one(
            address,
            lambda stubs: stubs.repository.RepositoryIndex(
                ipb.RepositoryIndexRequest(), timeout=timeout_s, metadata=self._metadata
            ),
            "RepositoryIndex",
        )
        if isinstance(reply, ModelHubError):
            raise reply
        return ReplicaIndex(
            entries=list(reply.models),
            devices=list(reply.devices),
            memory_used_bytes=reply.memory_used_bytes,
            memory_budget_bytes=reply.memory_budget_bytes,
            server_version=reply.server_version,
        )
