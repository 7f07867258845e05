"""`modelhub.inference.v1.ModelRepositoryService` servicer: repository index, explicit
load/unload and per-version statistics."""

from __future__ import annotations

import asyncio

import grpc

from modelhub.api.inference.v1 import inference_pb2 as ipb
from modelhub.api.inference.v1 import inference_pb2_grpc as ipb_grpc
from modelhub.common.auth import Role
from modelhub.inference import convert
from modelhub.inference.repository import IndexEntry
from modelhub.inference.runtime import CUDA
from modelhub.inference.service import InferenceService

SERVICE_NAME = "modelhub.inference.v1.ModelRepositoryService"

ROLES: dict[str, Role] = {
    "RepositoryIndex": Role.READER,
    "GetModelStatistics": Role.READER,
    "LoadModel": Role.ADMIN,
    "UnloadModel": Role.ADMIN,
}


def device_of(provider: str) -> str:
    """The device an execution provider runs on ("" when not loaded): the CUDA provider
    runs on the default device, 0."""
    if not provider:
        return ""
    return "cuda:0" if provider == CUDA else "cpu"


def _entry(entry: IndexEntry) -> ipb.ModelIndexEntry:
    message = convert.index_entry(entry)
    message.device = device_of(entry.provider)
    return message


class ModelRepositoryServicer(ipb_grpc.ModelRepositoryServiceServicer):
    """Thin edge over the repository operations of `InferenceService`."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def RepositoryIndex(
        self, request: ipb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> ipb.RepositoryIndexResponse:
        entries = self._service.index(request.ready_only)
        repository = self._service.repository
        return ipb.RepositoryIndexResponse(
            models=[_entry(e) for e in entries],
            # The CUDA probe runs once, the first time: not on the event loop.
            devices=await asyncio.to_thread(repository.devices),
            memory_used_bytes=repository.memory_used,
            memory_budget_bytes=repository.memory_budget,
            server_version=self._service.version,
        )

    async def LoadModel(
        self, request: ipb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> ipb.LoadModelResponse:
        entry = await self._service.load_model(
            request.model, request.version, convert.load_overrides(request)
        )
        return ipb.LoadModelResponse(model=_entry(entry))

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
