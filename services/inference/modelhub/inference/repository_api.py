"""`modelhub.inference.v1.ModelRepositoryService` servicer: repository index, explicit
load/unload and per-version statistics."""

from __future__ import annotations

import grpc

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.common.auth import Role
from modelhub.inference import convert
from modelhub.inference.service import InferenceService

SERVICE_NAME = "modelhub.inference.v1.ModelRepositoryService"

ROLES: dict[str, Role] = {
    "RepositoryIndex": Role.READER,
    "GetModelStatistics": Role.READER,
    "LoadModel": Role.ADMIN,
    "UnloadModel": Role.ADMIN,
}


class ModelRepositoryServicer(ipb_grpc.ModelRepositoryServiceServicer):
    """Thin edge over the repository operations of `InferenceService`."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def RepositoryIndex(
        self, request: ipb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> ipb.RepositoryIndexResponse:
        entries = self._service.index(request.ready_only)
        return ipb.RepositoryIndexResponse(models=[convert.index_entry(e) for e in entries])

    async def LoadModel(
        self, request: ipb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> ipb.LoadModelResponse:
        entry = await self._service.load_model(
            request.model, request.version, convert.load_overrides(request)
        )
        return ipb.LoadModelResponse(model=convert.index_entry(entry))

    async def UnloadModel(
        self, request: ipb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> ipb.UnloadModelResponse:
        await self._service.unload_model(request.model, request.version)
        return ipb.UnloadModelResponse()

    async def GetModelStatistics(
        self, request: ipb.GetModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> ipb.GetModelStatisticsResponse:
        served = self._service.statistics(request.model, request.version)
        return ipb.GetModelStatisticsResponse(
            model_stats=[convert.model_statistics(s) for s in served]
        )
