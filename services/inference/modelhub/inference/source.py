"""Where models come from: the `ModelSource` interface and the events of its watch feed.

The inference service needs three things from a model source: resolve a version reference
to a version (digest, size, schema), stream an artifact's bytes, and follow the
deployments that say which versions to keep loaded. `registry_source.RegistryModelSource`
implements it over the registry's gRPC API; `local_source.DirectoryModelSource` over a
directory of ONNX files.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from modelhub.inference.audit import AuditPolicy
from modelhub.inference.endpoints import EndpointRoutes
from modelhub.inference.spec import LoadOverrides, VersionInfo

DEFAULT_REFERENCE = ""  # the model's default version: alias `champion`, else `latest`
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class VersionSelector:
    """A deployment's choice of version: a number, an alias, or (neither) the latest."""

    version: int | None = None
    alias: str | None = None

    @property
    def reference(self) -> str:
        if self.version is not None:
            return str(self.version)
        return self.alias or LATEST


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """Desired state: keep these versions of `model` loaded, with these settings. The
    first selector is the primary: it becomes the model's default version here."""

    name: str
    model: str
    selectors: tuple[VersionSelector, ...]
    overrides: LoadOverrides


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"
    SYNCED = "synced"  # end of the initial snapshot
    PROGRESS = "progress"  # heartbeat: the revision is safe to resume from


class ResourceKind(enum.Enum):
    DEPLOYMENT = "deployment"
    ALIAS = "alias"
    MODEL_VERSION = "model_version"
    MODEL = "model"
    ENDPOINT = "endpoint"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One change of the watch feed. `model` is the model the resource belongs to
    (empty for SYNCED/PROGRESS); `deployment` is set for deployment PUTs; `audit` is an
    endpoint's audit policy on its PUTs (None: the endpoint records nothing)."""

    type: EventType
    revision: int
    kind: ResourceKind = ResourceKind.OTHER
    name: str = ""
    model: str = ""
    deployment: DeploymentSpec | None = None
    audit: AuditPolicy | None = None
    # An endpoint's variants, shadows and the versions they resolve to (on its PUTs).
    routes: EndpointRoutes | None = None


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
