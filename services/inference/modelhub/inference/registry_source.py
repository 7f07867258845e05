"""`ModelSource` over the registry's gRPC API (modelhub.registry.v1.RegistryService).

Versions, deployments, endpoints and the Watch feed are read through the registry
contract's one view (`modelhub.common.registry_view`, `modelhub.common.registry_client`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.common.contract import ResourceKind
from modelhub.common.errors import (
    InvalidArgumentError,
    ModelHubError,
    NotFoundError,
    UnavailableError,
)
from modelhub.common.names import LATEST, is_decimal, model_name, version_name
from modelhub.common.registry_client import RegistryConnection
from modelhub.common.registry_view import version_from_pb
from modelhub.common.settings import RegistryClientSettings, TlsSettings
from modelhub.common.status import domain_error
from modelhub.inference.source import DEFAULT_REFERENCE, SourceEvent
from modelhub.inference.spec import VersionInfo

log = logging.getLogger("modelhub.inference.registry")

# The CLI's batch scorer reads versions with the same conversion.
version_info = version_from_pb


def _as_source_error(error: ModelHubError) -> ModelHubError:
    """What a caller of inference hears of a failed registry call: the version does not
    exist (NOT_FOUND) or was named wrong (INVALID_ARGUMENT), else the registry is
    unavailable to this server (its own credentials or deadline are not the caller's)."""
    if isinstance(error, NotFoundError | InvalidArgumentError):
        return error
    return UnavailableError(
        f"{error.message} (the registry answered {error.reason})",
        reason="REGISTRY_UNAVAILABLE",
    )


class RegistryModelSource:
    """Resolves versions, downloads artifacts and watches deployments over gRPC.

    Create it inside the running event loop (it opens an aio channel)."""

    # Endpoints for their audit policies (the payload audit log) and routes.
    WATCH_KINDS = (
        ResourceKind.DEPLOYMENT,
        ResourceKind.ALIAS,
        ResourceKind.MODEL_VERSION,
        ResourceKind.MODEL,
        ResourceKind.ENDPOINT,
    )

    def __init__(
        self,
        registry: RegistryClientSettings,
        *,
        max_message_bytes: int = 64 << 20,
        default_alias: str = "champion",
        tls: TlsSettings | None = None,
    ) -> None:
        self.address = registry.address
        # The alias a model's default version follows ("": the newest READY version).
        self.default_alias = default_alias
        self._registry = RegistryConnection(registry, tls=tls, max_message_bytes=max_message_bytes)
        self._watch = self._registry.watch(self.WATCH_KINDS)

    async def _get(self, name: str) -> VersionInfo:
        try:
            return version_from_pb(await self._registry.get_version(name))
        except ModelHubError as exc:
            raise _as_source_error(exc) from None

    async def resolve(self, model: str, reference: str) -> VersionInfo:
        base = model_name(model)
        if reference == DEFAULT_REFERENCE:
            if self.default_alias:
                with contextlib.suppress(NotFoundError):
                    return await self._get(f"{base}@{self.default_alias}")
            return await self._get(f"{base}@{LATEST}")
        if is_decimal(reference):
            return await self._get(version_name(model, int(reference)))
        return await self._get(f"{base}@{reference}")

    async def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        name = info.name
        stream: Any = self._registry.stub.DownloadModelVersion(
            rpb.DownloadModelVersionRequest(name=name), metadata=self._registry.metadata
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
            raise _as_source_error(domain_error(exc, f"downloading {name}")) from None
        finally:
            stream.cancel()

    def watch(self, start_revision: int) -> AsyncIterator[SourceEvent]:
        return self._watch(start_revision)

    async def close(self) -> None:
        await self._registry.close()
