"""gRPC servicer of `modelhub.registry.v1.RegistryService`: proto → domain → proto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.common.auth import Role
from modelhub.common.errors import InvalidArgumentError
from modelhub.registry import convert
from modelhub.registry.service import RegistryService, UploadRequest
from modelhub.registry.uploads import MAX_CHUNK_BYTES, UploadSession

SERVICE_NAME = "modelhub.registry.v1.RegistryService"

ROLES: dict[str, Role] = {
    **dict.fromkeys(
        [
            "GetModel",
            "ListModels",
            "GetModelVersion",
            "ResolveModelVersion",
            "ListModelVersions",
            "DownloadModelVersion",
            "ListAliases",
            "GetDeployment",
            "ListDeployments",
            "GetEndpoint",
            "ListEndpoints",
            "Watch",
        ],
        Role.READER,
    ),
    **dict.fromkeys(
        [
            "CreateModel",
            "UpdateModel",
            "UploadModelVersion",
            "StartUpload",
            "AppendUpload",
            "GetUpload",
            "CommitUpload",
            "CancelUpload",
            "UpdateModelVersion",
            "ArchiveModelVersion",
            "SetAlias",
            "DeleteAlias",
        ],
        Role.PUBLISHER,
    ),
    # Deletes, deployments and endpoints (what production serves) need ADMIN.
}

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, service: RegistryService) -> None:
        self.service = service

    # ------------------------------------------------------------------------ models

    async def CreateModel(self, request: pb.CreateModelRequest, context: Context) -> pb.Model:
        model = convert.model_from_pb(request.model_id, request.model)
        return convert.model_to_pb(await self.service.create_model(model))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.Model:
        return convert.model_to_pb(await self.service.get_model(request.name))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        page = await self.service.list_models(
            request.page_size,
            request.page_token,
            request.name_prefix,
            request.tag,
            request.label,
        )
        return pb.ListModelsResponse(
            models=[convert.model_to_pb(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateModel(self, request: pb.UpdateModelRequest, context: Context) -> pb.Model:
        patch = convert.patch_from_mask(
            request.model, request.update_mask, convert.MODEL_UPDATABLE, "model"
        )
        model = await self.service.update_model(request.model.name, patch, request.model.etag)
        return convert.model_to_pb(model)

    async def DeleteModel(
        self, request: pb.DeleteModelRequest, context: Context
    ) -> pb.DeleteModelResponse:
        await self.service.delete_model(request.name, request.etag)
        return pb.DeleteModelResponse()

    # ---------------------------------------------------------------------- versions

    async def UploadModelVersion(
        self, request_iterator: AsyncIterator[pb.UploadModelVersionRequest], context: Context
    ) -> pb.ModelVersion:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise InvalidArgumentError(
                "the first message of an upload must carry `metadata` (then send `chunk`s)",
                field="metadata",
            )

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgumentError(
                        "after the first message, every upload message must carry a `chunk`",
                        field="chunk",
                    )
                yield message.chunk

        request = convert.upload_from_pb(first.metadata)
        version = await self.service.upload_version(request, chunks())
        return convert.version_to_pb(version)

    # ---------------------------------------------------------------- upload sessions

    def _session_to_pb(self, session: UploadSession) -> pb.UploadSession:
        def at(seconds: float) -> Timestamp:
            stamp = Timestamp()
            stamp.FromNanoseconds(int(seconds * 1e9))
            return stamp

        return pb.UploadSession(
            name=session.name,
            metadata=pb.UploadMetadata.FromString(session.metadata),
            received_bytes=session.received_bytes,
            max_chunk_bytes=MAX_CHUNK_BYTES,
            max_total_bytes=self.service.max_upload_bytes,
            create_time=at(session.create_time),
            expire_time=at(session.expire_time),
        )

    async def StartUpload(
        self, request: pb.StartUploadRequest, context: Context
    ) -> pb.UploadSession:
        if not request.HasField("metadata"):
            raise InvalidArgumentError(
                "metadata is required: the version's metadata, as UploadModelVersion's first "
                "message carries it",
                field="metadata",
            )
        session = await self.service.start_upload(
            convert.upload_from_pb(request.metadata), request.metadata.SerializeToString()
        )
        return self._session_to_pb(session)

    async def AppendUpload(
        self, request: pb.AppendUploadRequest, context: Context
    ) -> pb.UploadSession:
        session = await self.service.append_upload(request.name, request.offset, request.data.data)
        return self._session_to_pb(session)

    async def GetUpload(self, request: pb.GetUploadRequest, context: Context) -> pb.UploadSession:
        return self._session_to_pb(await self.service.get_upload(request.name))

    async def CommitUpload(
        self, request: pb.CommitUploadRequest, context: Context
    ) -> pb.ModelVersion:
        def decode(metadata: bytes) -> UploadRequest:
            return convert.upload_from_pb(pb.UploadMetadata.FromString(metadata))

        return convert.version_to_pb(await self.service.commit_upload(request.name, decode))

    async def CancelUpload(
        self, request: pb.CancelUploadRequest, context: Context
    ) -> pb.CancelUploadResponse:
        await self.service.cancel_upload(request.name)
        return pb.CancelUploadResponse()

    async def GetModelVersion(
        self, request: pb.GetModelVersionRequest, context: Context
    ) -> pb.ModelVersion:
        full = convert.wants_full(request.view, default_full=True)
        return convert.version_to_pb(await self.service.get_version(request.name, full))

    async def ResolveModelVersion(
        self, request: pb.ResolveModelVersionRequest, context: Context
    ) -> pb.ModelVersion:
        full = convert.wants_full(request.view, default_full=True)
        return convert.version_to_pb(await self.service.resolve_version(request.reference, full))

    async def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: Context
    ) -> pb.ListModelVersionsResponse:
        page = await self.service.list_versions(
            request.parent,
            request.page_size,
            request.page_token,
            convert.status_from_pb(request.status),
            request.alias,
            request.tag,
            convert.wants_full(request.view, default_full=False),
        )
        return pb.ListModelVersionsResponse(
            versions=[convert.version_to_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateModelVersion(
        self, request: pb.UpdateModelVersionRequest, context: Context
    ) -> pb.ModelVersion:
        patch = convert.patch_from_mask(
            request.version, request.update_mask, convert.VERSION_UPDATABLE, "model version"
        )
        version = await self.service.update_version(
            request.version.name, patch, request.version.etag
        )
        return convert.version_to_pb(version)

    async def ArchiveModelVersion(
        self, request: pb.ArchiveModelVersionRequest, context: Context
    ) -> pb.ModelVersion:
        version = await self.service.archive_version(request.name, request.etag)
        return convert.version_to_pb(version)

    async def DeleteModelVersion(
        self, request: pb.DeleteModelVersionRequest, context: Context
    ) -> pb.DeleteModelVersionResponse:
        await self.service.delete_version(request.name, request.etag)
        return pb.DeleteModelVersionResponse()

    async def DownloadModelVersion(
        self, request: pb.DownloadModelVersionRequest, context: Context
    ) -> AsyncIterator[pb.DownloadModelVersionResponse]:
        version, chunks = await self.service.download(request.name, request.chunk_size)
        yield pb.DownloadModelVersionResponse(version=convert.version_to_pb(version))
        async for chunk in chunks:
            yield pb.DownloadModelVersionResponse(chunk=chunk)

    # ----------------------------------------------------------------------- aliases

    async def SetAlias(self, request: pb.SetAliasRequest, context: Context) -> pb.Alias:
        alias = await self.service.set_alias(request.parent, request.alias, request.version)
        return convert.alias_to_pb(alias)

    async def DeleteAlias(
        self, request: pb.DeleteAliasRequest, context: Context
    ) -> pb.DeleteAliasResponse:
        await self.service.delete_alias(request.name)
        return pb.DeleteAliasResponse()

    async def ListAliases(
        self, request: pb.ListAliasesRequest, context: Context
    ) -> pb.ListAliasesResponse:
        aliases = await self.service.list_aliases(request.parent)
        return pb.ListAliasesResponse(aliases=[convert.alias_to_pb(a) for a in aliases])

    # ------------------------------------------------------------------- deployments

    async def CreateDeployment(
        self, request: pb.CreateDeploymentRequest, context: Context
    ) -> pb.Deployment:
        dep = convert.deployment_from_pb(request.deployment_id, request.deployment)
        return convert.deployment_to_pb(await self.service.create_deployment(dep))

    async def GetDeployment(
        self, request: pb.GetDeploymentRequest, context: Context
    ) -> pb.Deployment:
        return convert.deployment_to_pb(await self.service.get_deployment(request.name))

    async def ListDeployments(
        self, request: pb.ListDeploymentsRequest, context: Context
    ) -> pb.ListDeploymentsResponse:
        page = await self.service.list_deployments(
            request.page_size, request.page_token, request.model
        )
        return pb.ListDeploymentsResponse(
            deployments=[convert.deployment_to_pb(d) for d in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateDeployment(
        self, request: pb.UpdateDeploymentRequest, context: Context
    ) -> pb.Deployment:
        patch = convert.patch_from_mask(
            request.deployment, request.update_mask, convert.DEPLOYMENT_UPDATABLE, "deployment"
        )
        dep = await self.service.update_deployment(
            request.deployment.name, patch, request.deployment.etag
        )
        return convert.deployment_to_pb(dep)

    async def DeleteDeployment(
        self, request: pb.DeleteDeploymentRequest, context: Context
    ) -> pb.DeleteDeploymentResponse:
        await self.service.delete_deployment(request.name, request.etag)
        return pb.DeleteDeploymentResponse()

    # --------------------------------------------------------------------- endpoints

    async def CreateEndpoint(
        self, request: pb.CreateEndpointRequest, context: Context
    ) -> pb.Endpoint:
        ep = convert.endpoint_from_pb(request.endpoint_id, request.endpoint)
        return convert.endpoint_to_pb(await self.service.create_endpoint(ep))

    async def GetEndpoint(self, request: pb.GetEndpointRequest, context: Context) -> pb.Endpoint:
        return convert.endpoint_to_pb(await self.service.get_endpoint(request.name))

    async def ListEndpoints(
        self, request: pb.ListEndpointsRequest, context: Context
    ) -> pb.ListEndpointsResponse:
        page = await self.service.list_endpoints(request.page_size, request.page_token)
        return pb.ListEndpointsResponse(
            endpoints=[convert.endpoint_to_pb(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateEndpoint(
        self, request: pb.UpdateEndpointRequest, context: Context
    ) -> pb.Endpoint:
        patch = convert.patch_from_mask(
            request.endpoint, request.update_mask, convert.ENDPOINT_UPDATABLE, "endpoint"
        )
        ep = await self.service.update_endpoint(request.endpoint.name, patch, request.endpoint.etag)
        return convert.endpoint_to_pb(ep)

    async def DeleteEndpoint(
        self, request: pb.DeleteEndpointRequest, context: Context
    ) -> pb.DeleteEndpointResponse:
        await self.service.delete_endpoint(request.name, request.etag)
        return pb.DeleteEndpointResponse()

    # ------------------------------------------------------------------------- watch

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchEvent]:
        kinds = convert.kinds_from_pb(list(request.kinds))
        async for event in self.service.watch(request.start_revision, kinds):
            yield convert.event_to_pb(event)


def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server)
