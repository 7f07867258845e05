"""Async client of the registry service."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.api.common.v1 import types_pb2
from modelhub.api.registry.v1 import registry_pb2 as pb
from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.client.errors import ClientError
from modelhub.common.channels import bearer, service_channel
from modelhub.common.filestore import file_digest
from modelhub.common.names import (
    DEPLOYMENTS,
    ENDPOINTS,
    deployment_name,
    endpoint_name,
    qualified_name,
)
from modelhub.common.settings import TlsSettings

T = TypeVar("T")
Progress = Callable[[int, int], None]
CHUNK = 1024 * 1024


class RegistryClient:
    """Registry calls with errors raised as `ClientError`. Use as an async context manager."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout: float = 60.0,
        tls: TlsSettings | None = None,
    ) -> None:
        """`tls`: mutual TLS with the suite's files (MODELHUB_TLS_*) for a registry that
        requires it; None or off: plaintext."""
        self.address = address
        self._metadata = bearer(token)
        self._timeout = timeout
        self._channel = service_channel(address, 64 * 1024 * 1024, tls or TlsSettings.off())
        self.stub = registry_pb2_grpc.RegistryServiceStub(self._channel)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None

    def _kw(self, streaming: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"metadata": self._metadata}
        if not streaming:
            kwargs["timeout"] = self._timeout
        return kwargs

    # ------------------------------------------------------------------------ models

    async def create_model(
        self, model: str, description: str = "", tags: Sequence[str] = ()
    ) -> pb.Model:
        request = pb.CreateModelRequest(
            model_id=model, model=pb.Model(description=description, tags=list(tags))
        )
        return await self._call(self.stub.CreateModel(request, **self._kw()))

    async def get_model(self, model: str) -> pb.Model:
        request = pb.GetModelRequest(name=qualified_name(model))
        return await self._call(self.stub.GetModel(request, **self._kw()))

    async def list_models(
        self, name_prefix: str = "", tag: str = "", label: str = ""
    ) -> list[pb.Model]:
        """Every model matching the filters; `label` is `key=value` (e.g. `owner=alice`)."""
        models: list[pb.Model] = []
        token = ""
        while True:
            request = pb.ListModelsRequest(
                page_size=200, page_token=token, name_prefix=name_prefix, tag=tag, label=label
            )
            page = await self._call(self.stub.ListModels(request, **self._kw()))
            models += page.models
            token = page.next_page_token
            if not token:
                return models

    async def delete_model(self, model: str) -> None:
        request = pb.DeleteModelRequest(name=qualified_name(model))
        await self._call(self.stub.DeleteModel(request, **self._kw()))

    # ---------------------------------------------------------------------- versions

    async def push(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        create_model: bool = True,
        description: str = "",
        author: str = "",
        source: pb.Source | None = None,
        metadata: dict[str, str] | None = None,
        tags: Sequence[str] = (),
        aliases: Sequence[str] = (),
        data_profile: types_pb2.DataProfile | None = None,
        progress: Progress | None = None,
        derivation: pb.Derivation | None = None,
        evaluation: pb.EvaluationReport | None = None,
    ) -> pb.ModelVersion:
        """Upload an ONNX file as a new version (streamed in chunks, digest declared); an
        optimized derivative names its parent and method (`derivation`) and its report."""
        file = Path(path)
        digest, size = await asyncio.to_thread(file_digest, file)
        header = pb.UploadMetadata(
            parent=qualified_name(model),
            create_model=create_model,
            description=description,
            author=author,
            source=source,
            metadata=metadata or {},
            tags=list(tags),
            aliases=list(aliases),
            sha256=digest,
            size_bytes=size,
            data_profile=data_profile,
            derivation=derivation,
            evaluation=evaluation,
        )

        async def requests() -> AsyncIterator[pb.UploadModelVersionRequest]:
            yield pb.UploadModelVersionRequest(metadata=header)
            sent = 0
            with file.open("rb") as fh:  # noqa: ASYNC230 - 1 MiB reads between sends
                for block in iter(lambda: fh.read(CHUNK), b""):
                    sent += len(block)
                    yield pb.UploadModelVersionRequest(chunk=block)
                    if progress is not None:
                        progress(sent, size)

        return await self._call(
            self.stub.UploadModelVersion(requests(), **self._kw(streaming=True))
        )

    async def resolve(self, reference: str) -> pb.ModelVersion:
        request = pb.ResolveModelVersionRequest(reference=reference)
        return await self._call(self.stub.ResolveModelVersion(request, **self._kw()))

    async def list_versions(
        self, model: str, status: int = 0, alias: str = "", tag: str = ""
    ) -> list[pb.ModelVersion]:
        versions: list[pb.ModelVersion] = []
        token = ""
        while True:
            request = pb.ListModelVersionsRequest(
                parent=qualified_name(model),
                page_size=200,
                page_token=token,
                status=status,  # type: ignore[arg-type]
                alias=alias,
                tag=tag,
            )
            page = await self._call(self.stub.ListModelVersions(request, **self._kw()))
            versions += page.versions
            token = page.next_page_token
            if not token:
                return versions

    async def archive(self, reference: str) -> pb.ModelVersion:
        version = await self.resolve(reference)
        request = pb.ArchiveModelVersionRequest(name=version.name)
        return await self._call(self.stub.ArchiveModelVersion(request, **self._kw()))

    async def delete_version(self, reference: str) -> None:
        version = await self.resolve(reference)
        request = pb.DeleteModelVersionRequest(name=version.name)
        await self._call(self.stub.DeleteModelVersion(request, **self._kw()))

    async def download(
        self, reference: str, destination: str | os.PathLike[str], progress: Progress | None = None
    ) -> pb.ModelVersion:
        """Download a version's artifact, verifying its sha256; written atomically."""
        version = await self.resolve(reference)
        target = Path(destination)
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        received = 0
        try:
            with partial.open("wb") as fh:
                stream = self.stub.DownloadModelVersion(
                    pb.DownloadModelVersionRequest(name=version.name), **self._kw(streaming=True)
                )
                async for message in stream:
                    if message.HasField("version"):
                        version = message.version
                        continue
                    fh.write(message.chunk)
                    digest.update(message.chunk)
                    received += len(message.chunk)
                    if progress is not None:
                        progress(received, version.artifact.size_bytes)
        except grpc.aio.AioRpcError as exc:
            partial.unlink(missing_ok=True)
            raise ClientError.from_rpc_error(exc) from None
        if digest.hexdigest() != version.artifact.sha256:
            partial.unlink(missing_ok=True)
            raise ClientError(
                grpc.StatusCode.DATA_LOSS,
                f"downloaded bytes have sha256 {digest.hexdigest()}, expected "
                f"{version.artifact.sha256}",
            )
        partial.replace(target)
        return version

    # ----------------------------------------------------------------------- aliases

    async def set_alias(self, model: str, alias: str, version: int) -> pb.Alias:
        request = pb.SetAliasRequest(parent=qualified_name(model), alias=alias, version=version)
        return await self._call(self.stub.SetAlias(request, **self._kw()))

    async def delete_alias(self, model: str, alias: str) -> None:
        request = pb.DeleteAliasRequest(name=f"{qualified_name(model)}/aliases/{alias}")
        await self._call(self.stub.DeleteAlias(request, **self._kw()))

    async def list_aliases(self, model: str) -> list[pb.Alias]:
        request = pb.ListAliasesRequest(parent=qualified_name(model))
        return list((await self._call(self.stub.ListAliases(request, **self._kw()))).aliases)

    # ------------------------------------------------------- deployments and endpoints

    async def apply_deployment(self, deployment_id: str, spec: pb.Deployment) -> pb.Deployment:
        """Create the deployment, or replace the existing one's spec."""
        try:
            current = await self._call(
                self.stub.GetDeployment(
                    pb.GetDeploymentRequest(name=deployment_name(deployment_id)), **self._kw()
                )
            )
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            request = pb.CreateDeploymentRequest(deployment_id=deployment_id, deployment=spec)
            return await self._call(self.stub.CreateDeployment(request, **self._kw()))
        update = pb.Deployment()
        update.CopyFrom(spec)
        update.name, update.etag = current.name, current.etag
        mask = FieldMask(
            paths=["versions", "instance_count", "device", "batching", "runtime", "labels"]
        )
        return await self._call(
            self.stub.UpdateDeployment(
                pb.UpdateDeploymentRequest(deployment=update, update_mask=mask), **self._kw()
            )
        )

    async def apply_endpoint(self, endpoint_id: str, spec: pb.Endpoint) -> pb.Endpoint:
        """Create the endpoint, or replace the existing one's policy (keeping its salt unless
        the spec sets one)."""
        try:
            current = await self._call(
                self.stub.GetEndpoint(
                    pb.GetEndpointRequest(name=endpoint_name(endpoint_id)), **self._kw()
                )
            )
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            request = pb.CreateEndpointRequest(endpoint_id=endpoint_id, endpoint=spec)
            return await self._call(self.stub.CreateEndpoint(request, **self._kw()))
        update = pb.Endpoint()
        update.CopyFrom(spec)
        update.name, update.etag = current.name, current.etag
        paths = ["description", "sticky_key", "variants", "shadows", "fallback", "labels", "audit"]
        if spec.salt:
            paths.append("salt")
        return await self._call(
            self.stub.UpdateEndpoint(
                pb.UpdateEndpointRequest(endpoint=update, update_mask=FieldMask(paths=paths)),
                **self._kw(),
            )
        )

    async def get_deployment(self, deployment: str) -> pb.Deployment:
        name = qualified_name(deployment, DEPLOYMENTS)
        return await self._call(
            self.stub.GetDeployment(pb.GetDeploymentRequest(name=name), **self._kw())
        )

    async def list_deployments(self) -> list[pb.Deployment]:
        request = pb.ListDeploymentsRequest(page_size=1000)
        return list(
            (await self._call(self.stub.ListDeployments(request, **self._kw()))).deployments
        )

    async def list_endpoints(self) -> list[pb.Endpoint]:
        request = pb.ListEndpointsRequest(page_size=1000)
        return list((await self._call(self.stub.ListEndpoints(request, **self._kw()))).endpoints)

    async def get_endpoint(self, endpoint: str) -> pb.Endpoint:
        name = qualified_name(endpoint, ENDPOINTS)
        return await self._call(
            self.stub.GetEndpoint(pb.GetEndpointRequest(name=name), **self._kw())
        )

    async def set_endpoint_audit(
        self, endpoint: str, sample_rate: float, redact_inputs: Sequence[str] = ()
    ) -> pb.Endpoint:
        """Set an endpoint's audit policy (the payload audit log); rate 0 turns it off."""
        name = qualified_name(endpoint, ENDPOINTS)
        update = pb.Endpoint(
            name=name,
            audit=pb.AuditPolicy(sample_rate=sample_rate, redact_inputs=list(redact_inputs)),
        )
        return await self._call(
            self.stub.UpdateEndpoint(
                pb.UpdateEndpointRequest(endpoint=update, update_mask=FieldMask(paths=["audit"])),
                **self._kw(),
            )
        )

    async def delete_endpoint(self, endpoint: str) -> None:
        name = qualified_name(endpoint, ENDPOINTS)
        await self._call(
            self.stub.DeleteEndpoint(pb.DeleteEndpointRequest(name=name), **self._kw())
        )

    async def delete_deployment(self, deployment: str) -> None:
        name = qualified_name(deployment, DEPLOYMENTS)
        await self._call(
            self.stub.DeleteDeployment(pb.DeleteDeploymentRequest(name=name), **self._kw())
        )

    async def watch(
        self, start_revision: int = 0, kinds: Sequence[pb.ResourceKind] = ()
    ) -> AsyncIterator[pb.WatchEvent]:
        """The change feed from `start_revision` (0: the current state first), of `kinds`
        only when given."""
        request = pb.WatchRequest(start_revision=start_revision, kinds=list(kinds))
        stream = self.stub.Watch(request, **self._kw(streaming=True))
        try:
            async for event in stream:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None
