"""The router's answers to Triton's repository and statistics extensions behind the front
door (Envoy routes them here; docs/data-plane.md): `inference.GRPCInferenceService`'s
RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload and ModelStatistics (its other
methods stay UNIMPLEMENTED here: Envoy sends them to the inference replicas), and the same
four as REST (`modelhub.rest.v1.RepositoryRest`, transcoded by Envoy) in Triton's JSON.

They act on the whole deployment (`triton_service`); on an inference replica's own port
the same gRPC methods act on that replica."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from google.api import httpbody_pb2

from modelhub.api.oip import grpc_predict_v2_pb2 as opb
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as opb_grpc
from modelhub.api.oip import rest_pb2, rest_pb2_grpc
from modelhub.common.auth import Role
from modelhub.common.channels import Metadata
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.rest import empty_body, json_body, message_dict, read_json
from modelhub.router.triton import IndexRow
from modelhub.router.triton_service import Fanout, FrontDoorRepository

OIP_SERVICE_NAME = "inference.GRPCInferenceService"
REST_SERVICE_NAME = "modelhub.rest.v1.RepositoryRest"

# Both services' methods (bare names, as the edge interceptor looks them up).
ROLES: dict[str, Role] = {
    "RepositoryIndex": Role.READER,
    "ModelStatistics": Role.READER,
    # RepositoryModelLoad and RepositoryModelUnload: ADMIN (not listed), as on inference.
}

# Response header (gRPC initial metadata) of reads that ask every replica: how many
# answered, of how many asked (`2/3`: one was left out; Triton has no field for it).
REPLICAS_HEADER = "x-modelhub-replicas"

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def caller_credentials(context: Context) -> Metadata:
    """The caller's `authorization` metadata, to act toward the registry and the replicas
    as the caller (empty when the caller sent none)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return (("authorization", value if isinstance(value, str) else value.decode()),)
    return ()


class Budget:
    """How long a load or unload may take: the setting, within the call's deadline (with a
    margin, so that the answer still reaches the caller)."""

    def __init__(self, limit_s: float, margin: float = 0.1) -> None:
        self.limit_s = limit_s
        self.margin = margin

    def of(self, context: Context) -> float:
        remaining: float | None = context.time_remaining()
        if remaining is None:
            return self.limit_s
        return max(0.05, min(self.limit_s, remaining * (1 - self.margin)))


def _index_entry(row: IndexRow) -> opb.RepositoryIndexResponse.ModelIndex:
    return opb.RepositoryIndexResponse.ModelIndex(
        name=row.model, version=str(row.version), state=row.state, reason=row.reason
    )


async def _send_fanout(context: Context, fanout: Fanout) -> None:
    await context.send_initial_metadata(((REPLICAS_HEADER, fanout.header()),))


def _refuse_load_parameters(names: list[str]) -> None:
    if names:
        raise InvalidArgumentError(
            f"load parameters are not supported (got {', '.join(sorted(names))}); set a "
            "deployment's settings through the registry",
            field="parameters",
        )


class TritonRepositoryServicer(opb_grpc.GRPCInferenceServiceServicer):
    """Triton's deployment-wide gRPC extensions; every other method is UNIMPLEMENTED."""

    def __init__(self, repository: FrontDoorRepository, budget: Budget) -> None:
        self._repository = repository
        self._budget = budget

    async def RepositoryIndex(
        self, request: opb.RepositoryIndexRequest, context: Context
    ) -> opb.RepositoryIndexResponse:
        rows, fanout = await self._repository.index(request.ready, context.time_remaining())
        await _send_fanout(context, fanout)
        return opb.RepositoryIndexResponse(models=[_index_entry(r) for r in rows])

    async def RepositoryModelLoad(
        self, request: opb.RepositoryModelLoadRequest, context: Context
    ) -> opb.RepositoryModelLoadResponse:
        _refuse_load_parameters(list(request.parameters))
        await self._repository.load(
            request.model_name, caller_credentials(context), self._budget.of(context)
        )
        return opb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: opb.RepositoryModelUnloadRequest, context: Context
    ) -> opb.RepositoryModelUnloadResponse:
        # Parameters (tritonclient always sends `unload_dependents`) change nothing here:
        # models have no dependents.
        await self._repository.unload(
            request.model_name, caller_credentials(context), self._budget.of(context)
        )
        return opb.RepositoryModelUnloadResponse()

    async def ModelStatistics(
        self, request: opb.ModelStatisticsRequest, context: Context
    ) -> opb.ModelStatisticsResponse:
        stats, fanout = await self._repository.statistics(
            request.name, request.version, context.time_remaining()
        )
        await _send_fanout(context, fanout)
        return opb.ModelStatisticsResponse(model_stats=stats)


class RepositoryRestServicer(rest_pb2_grpc.RepositoryRestServicer):
    """The same four in Triton's REST shapes (Envoy transcodes the /v2 paths)."""

    def __init__(self, repository: FrontDoorRepository, budget: Budget) -> None:
        self._repository = repository
        self._budget = budget

    async def RepositoryIndex(
        self, request: rest_pb2.RestRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        body = read_json(request.body, "repository index")
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgumentError(
                f"'ready' must be true or false, not {ready!r}", field="ready"
            )
        rows, fanout = await self._repository.index(ready, context.time_remaining())
        await _send_fanout(context, fanout)
        return json_body(
            [
                {"name": r.model, "version": str(r.version), "state": r.state, "reason": r.reason}
                for r in rows
            ]
        )

    async def RepositoryModelLoad(
        self, request: rest_pb2.RestRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        parameters = read_json(request.body, "load").get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidArgumentError("'parameters' must be a JSON object", field="parameters")
        _refuse_load_parameters(list(parameters))
        await self._repository.load(
            request.model_name, caller_credentials(context), self._budget.of(context)
        )
        return empty_body()

    async def RepositoryModelUnload(
        self, request: rest_pb2.RestRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        read_json(request.body, "unload")  # `{"parameters": {"unload_dependents": …}}`
        await self._repository.unload(
            request.model_name, caller_credentials(context), self._budget.of(context)
        )
        return empty_body()

    async def ModelStatistics(
        self, request: rest_pb2.RestRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        stats, fanout = await self._repository.statistics(
            request.model_name, request.model_version, context.time_remaining()
        )
        await _send_fanout(context, fanout)
        return json_body({"model_stats": [message_dict(s, defaults=True) for s in stats]})


def add_triton_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    opb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)


def add_rest_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    rest_pb2_grpc.add_RepositoryRestServicer_to_server(servicer, server)
