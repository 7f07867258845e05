"""Where models come from: the `ModelSource` interface and the events of its watch feed.

The inference service needs three things from a model source: resolve a version reference
to a version (digest, size, schema), stream an artifact's bytes, and follow the
deployments that say which versions to keep loaded. `registry_source.RegistryModelSource`
implements it over the registry's gRPC API; `local_source.DirectoryModelSource` over a
directory of ONNX files. Versions, selectors, deployments and the feed's events are the
registry contract's types (`modelhub.common.contract`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from modelhub.common.contract import (
    DEFAULT_REFERENCE,
    LATEST,
    DeploymentSpec,
    EventType,
    ResourceKind,
    VersionInfo,
    VersionSelector,
    WatchEvent,
)

__all__ = [
    "DEFAULT_REFERENCE",
    "LATEST",
    "DeploymentSpec",
    "EventType",
    "ModelSource",
    "ResourceKind",
    "SourceEvent",
    "VersionInfo",
    "VersionSelector",
]

# The watch feed's events are the registry contract's (`modelhub.common.contract`).
SourceEvent = WatchEvent


class ModelSource(Protocol):
    """The inference service's view of the registry."""

    async def resolve(self, model: str, reference: str) -> VersionInfo:
        """The version `reference` names: "" (default: alias `champion`, else the latest
        READY version), "latest", a version number, or an alias. NotFoundError if none."""
        ...

    def download(self, info: VersionInfo) -> AsyncIterator[bytes]:
        """The artifact's bytes, in chunks (the caller verifies the digest)."""
        ...

    def watch(self, start_revision: int) -> AsyncIterator[SourceEvent]:
        """Changes after `start_revision`; from 0: the current state (PUTs), then SYNCED,
        then live changes. RevisionCompactedError when the revision is too old."""
        ...

    async def close(self) -> None: ...
