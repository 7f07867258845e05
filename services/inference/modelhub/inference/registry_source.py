"""`ModelSource` over the registry's gRPC API (modelhub.registry.v1.RegistryService)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.registry.v1 import registry_pb2_grpc as rpb_grpc
from modelhub.common.channels import bearer, service_channel
from modelhub.common.errors import (
    InvalidArgumentError,
    ModelHubError,
    NotFoundError,
    RevisionCompactedError,
    UnavailableError,
)
from modelhub.common.names import is_decimal
from modelhub.common.settings import TlsSettings
from modelhub.inference import convert
from modelhub.inference.audit import AuditPolicy
from modelhub.inference.endpoints import EndpointRoutes
from modelhub.inference.source import (
    DEFAULT_REFERENCE,
    LATEST,
    DeploymentSpec,
    EventType,
    ResourceKind,
    SourceEvent,
    VersionSelector,
)
from modelhub.inference.spec import LoadOverrides, ModelSchema, TensorSpec, VersionInfo

log = logging.getLogger("modelhub.inference.registry")

_EVENT_TYPES = {
    rpb.WatchEvent.PUT: EventType.PUT,
    rpb.WatchEvent.DELETE: EventType.DELETE,
    rpb.WatchEvent.SYNCED: EventType.SYNCED,
    rpb.WatchEvent.PROGRESS: EventType.PROGRESS,
}
_KINDS = {
    rpb.DEPLOYMENT: ResourceKind.DEPLOYMENT,
    rpb.ALIAS: ResourceKind.ALIAS,
    rpb.MODEL_VERSION: ResourceKind.MODEL_VERSION,
    rpb.MODEL: ResourceKind.MODEL,
    rpb.ENDPOINT: ResourceKind.ENDPOINT,
}


def _domain_error(exc: grpc.aio.AioRpcError, what: str) -> ModelHubError:
    code = exc.code()
    details = exc.details() or code.name
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"{what}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgumentError(f"{what}: {details}", field="model_version")
    if code == grpc.StatusCode.OUT_OF_RANGE:
        return RevisionCompactedError(f"{what}: {details}")
    return UnavailableError(
        f"{what}: the registry answered {code.name}: {details}", reason="REGISTRY_UNAVAILABLE"
    )


def model_id(name: str) -> str:
    """`models/fraud/versions/3` → `fraud` (and the same for aliases and `models/fraud`)."""
    parts = name.split("/")
    return parts[1].split("@")[0] if len(parts) > 1 and parts[0] == "models" else ""


def version_info(version: rpb.ModelVersion) -> VersionInfo:
    schema = None
    if version.HasField("schema"):
        schema = ModelSchema(
            tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in version.schema.inputs),
            tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in version.schema.outputs),
        )
    return VersionInfo(
        model=model_id(version.model or version.name),
        version=version.version,
        sha256=version.artifact.sha256,
        size_bytes=version.artifact.size_bytes,
        schema=schema,
        aliases=tuple(version.aliases),
    )


def deployment_spec(deployment: rpb.Deployment) -> DeploymentSpec:
    selectors = []
    for selector in deployment.versions:
        kind = selector.WhichOneof("selector")
        if kind == "version":
            selectors.append(VersionSelector(version=selector.version))
        elif kind == "alias":
            selectors.append(VersionSelector(alias=selector.alias))
        else:
            selectors.append(VersionSelector())
    try:
        overrides = LoadOverrides(
            convert.batching_overrides(deployment.batching),
            convert.runtime_overrides(
                deployment.runtime, deployment.instance_count, deployment.device
            ),
        )
    except InvalidArgumentError as exc:
        log.warning("deployment %s: %s; using server defaults", deployment.name, exc.message)
        overrides = LoadOverrides()
    return DeploymentSpec(
        name=deployment.name,
        model=model_id(deployment.model),
        selectors=tuple(selectors) or (VersionSelector(),),
        overrides=overrides,
    )


def audit_policy(endpoint: rpb.Endpoint) -> AuditPolicy | None:
    """An endpoint's audit policy (None when it records nothing)."""
    if not endpoint.HasField("audit") or not endpoint.audit.sample_rate > 0:
        return None
    return AuditPolicy(
        sample_rate=min(endpoint.audit.sample_rate, 1.0),
        redact_inputs=frozenset(endpoint.audit.redact_inputs),
    )


def endpoint_routes(endpoint: rpb.Endpoint) -> EndpointRoutes:
    """An endpoint's variant and shadow names and the versions the registry resolved
    their selectors to."""
    targets: list[rpb.Variant | rpb.Shadow] = [*endpoint.variants, *endpoint.shadows]
    return EndpointRoutes(
        names=frozenset(t.name for t in targets),
        versions=frozenset(
            (model_id(t.model), int(t.selector.resolved_version))
            for t in targets
            if t.selector.resolved_version > 0
        ),
    )


def source_event(event: rpb.WatchEvent) -> SourceEvent:
    kind = _KINDS.get(event.kind, ResourceKind.OTHER)
    event_type = _EVENT_TYPES.get(event.type, EventType.PROGRESS)
    deployment = None
    audit = None
    routes = None
    model = model_id(event.name)
    if event.HasField("deployment"):
        model = model_id(event.deployment.model)
        if event_type is EventType.PUT:
            deployment = deployment_spec(event.deployment)
    elif event.HasField("endpoint") and event_type is EventType.PUT:
        audit = audit_policy(event.endpoint)
        routes = endpoint_routes(event.endpoint)
    return SourceEvent(
        event_type, event.revision, kind, event.name, model, deployment, audit, routes
    )


class RegistryModelSource:
    """Resolves versions, downloads artifacts and watches deployments over gRPC.

    Create it inside the running event loop (it opens an aio channel)."""

    # Endpoints for their audit policies (the payload audit log).
    WATCH_KINDS = (rpb.DEPLOYMENT, rpb.ALIAS, rpb.MODEL_VERSION, rpb.MODEL, rpb.ENDPOINT)

    def __init__(
        self,
        address: str,
        *,
        token: str = "",
        timeout_s: float = 10.0,
        max_message_bytes: int = 64 << 20,
        default_alias: str = "champion",
        tls: TlsSettings | None = None,
    ) -> None:
        self.address = address
        # The alias a model's default version follows ("": the newest READY version).
        self.default_alias = default_alias
        self._channel = service_channel(address, max_message_bytes, tls)
        self._stub = rpb_grpc.RegistryServiceStub(self._channel)
        self._metadata = bearer(token)
        self._timeout = timeout_s

    async def _get(self, name: str) -> rpb.ModelVersion:
        try:
            return await self._stub.GetModelVersion(
                rpb.GetModelVersionRequest(name=name, view=rpb.BASIC),
                metadata=self._metadata,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc, f"resolving {name}") from None

    async def resolve(self, model: str, reference: str) -> VersionInfo:
        base = f"models/{model}"
        if reference == DEFAULT_REFERENCE:
            version: rpb.ModelVersion | None = None
            if self.default_alias:
                with contextlib.suppress(NotFoundError):
                    version = await self._get(f"{base}@{self.default_alias}")
            if version is None:
                version = await self._get(f"{base}@{LATEST}")
        elif is_decimal(reference):
            version = await self._get(f"{base}/versions/{int(reference)}")
        else:
            version = await self._get(f"{base}@{reference}")
        return version_info(version)

    async def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        name = f"models/{info.model}/versions/{info.version}"
        stream: Any = self._stub.DownloadModelVersion(
            rpb.DownloadModelVersionRequest(name=name), metadata=self._metadata
        )
        try:
            async for message in stream:
                if message.HasField("version"):
                    digest = message.version.artifact.sha256
                    if digest and info.sha256 and digest != info.sha256:
                        raise UnavailableError(
                            f"the registry serves {name} with sha256 {digest}, not {info.sha256}",
                            reason="ARTIFACT_DIGEST_MISMATCH",
                        )
                    continue
                yield message.chunk
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc, f"downloading {name}") from None
        finally:
            stream.cancel()

    async def watch(self, start_revision: int) -> AsyncIterator[SourceEvent]:
        request = rpb.WatchRequest(start_revision=start_revision, kinds=self.WATCH_KINDS)
        stream: Any = self._stub.Watch(request, metadata=self._metadata)
        try:
            async for event in stream:
                yield source_event(event)
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc, f"watching from revision {start_revision}") from None
        finally:
            stream.cancel()

    async def close(self) -> None:
        await self._channel.close()
