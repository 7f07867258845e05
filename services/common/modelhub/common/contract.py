"""The registry's contract as the other services read it: one typed, immutable view of
version selectors, deployments, endpoints (variants, weights, sticky key, shadows,
fallback, audit), tensor schemas, versions and Watch events.

Router, inference and monitor work with these values; `modelhub.common.registry_view`
builds them from the registry's protobuf messages, with the registry's name rules
(`modelhub.common.names`). The registry stores these same values (tensor schemas,
selectors, sticky keys, Watch event types) inside its own resource records
(`modelhub.registry.resources`). No grpc, no protobuf here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from modelhub.common.names import LATEST, deployment_name, endpoint_name, version_name
from modelhub.common.serving import BatchingConfig, Device, RuntimeConfig

__all__ = [
    "DEFAULT_REFERENCE",
    "LATEST",
    "BatchingConfig",
    "DeploymentSpec",
    "Device",
    "EndpointAudit",
    "EndpointSpec",
    "EventType",
    "KeySource",
    "ModelSchema",
    "ResourceKind",
    "RuntimeConfig",
    "ShadowSpec",
    "StickyKey",
    "TensorSpec",
    "VariantSpec",
    "VersionInfo",
    "VersionKey",
    "VersionSelector",
    "WatchEvent",
]

# How a request names a model's default version: the default alias (`champion`), else the
# newest READY version.
DEFAULT_REFERENCE = ""


# ----------------------------------------------------------------------------- versions


@dataclass(frozen=True, slots=True)
class VersionSelector:
    """A version by number, by alias, or (both None) the newest READY version.
    `resolved_version` is what the registry resolved it to when it sent it (0: nothing,
    or not said); it takes no part in comparisons."""

    version: int | None = None
    alias: str | None = None
    resolved_version: int = field(default=0, compare=False)

    @property
    def is_latest(self) -> bool:
        return self.version is None and (self.alias is None or self.alias == LATEST)

    @property
    def reference(self) -> str:
        """The version reference a model source resolves: a number, an alias or `latest`."""
        if self.version is not None:
            return str(self.version)
        return self.alias or LATEST

    def describe(self) -> str:
        if self.version is not None:
            return f"version {self.version}"
        if not self.is_latest:
            return f"alias {self.alias}"
        return LATEST


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model: Open Inference Protocol datatype and shape (-1 =
    dynamic dimension), with the ONNX names of the dynamic dimensions when known."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    dim_names: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """A model's inputs and outputs, as read from its graph, and where the graph came
    from (opsets as (domain, version), producer, IR version, graph name)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opsets: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    producer_name: str = field(default="", compare=False)
    producer_version: str = field(default="", compare=False)
    ir_version: int = field(default=0, compare=False)
    graph_name: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True, order=True)
class VersionKey:
    """A model version's identity (model id, version number)."""

    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What the registry says about one version: identity, artifact digest and size,
    schema, aliases, and whether it is READY (an ARCHIVED version is not routed to)."""

    model: str
    version: int
    sha256: str
    size_bytes: int
    schema: ModelSchema | None = None
    aliases: tuple[str, ...] = ()
    ready: bool = field(default=True, compare=False)

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.model, self.version)

    @property
    def name(self) -> str:
        return version_name(self.model, self.version)


# -------------------------------------------------------------------------- deployments


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """`deployments/{id}`: keep these versions of `model` loaded on every inference
    replica, with these settings (zero / empty: the server's default). The first selector
    is the primary: it becomes the model's default version."""

    id: str
    model: str
    selectors: tuple[VersionSelector, ...] = (VersionSelector(),)
    instance_count: int = 0
    device: Device = Device.AUTO
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def name(self) -> str:
        return deployment_name(self.id)


# ---------------------------------------------------------------------------- endpoints


class KeySource(enum.StrEnum):
    """Where an endpoint's bucketing key comes from."""

    METADATA = "metadata"
    PARAMETER = "parameter"


@dataclass(frozen=True, slots=True)
class StickyKey:
    """An endpoint's bucketing key: a gRPC metadata key (lowercase, as on the wire) or a
    request parameter."""

    source: KeySource
    name: str

    def describe(self) -> str:
        return f"{self.source.value}:{self.name}"


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One variant of an endpoint: a model version and its share of traffic (`weight`,
    relative to the others), on its own pool of inference replicas (empty: the default)."""

    name: str
    model: str
    selector: VersionSelector
    weight: float
    pool: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """A shadow: a model version that receives a sampled copy of the endpoint's traffic."""

    name: str
    model: str
    selector: VersionSelector
    sample_rate: float
    pool: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointAudit:
    """Which of an endpoint's requests are recorded with their payloads, and the inputs
    whose values never are."""

    sample_rate: float = 0.0
    redact_inputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """`endpoints/{id}`: a routing policy as the registry holds it."""

    id: str
    variants: tuple[VariantSpec, ...]
    sticky_key: StickyKey | None = None
    salt: str = ""
    shadows: tuple[ShadowSpec, ...] = ()
    fallback: str = ""
    audit: EndpointAudit | None = None

    @property
    def name(self) -> str:
        return endpoint_name(self.id)


# -------------------------------------------------------------------------------- watch


class EventType(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"
    SYNCED = "synced"  # end of the initial snapshot
    PROGRESS = "progress"  # heartbeat: the revision is safe to resume from


class ResourceKind(enum.StrEnum):
    MODEL = "model"
    MODEL_VERSION = "model_version"
    ALIAS = "alias"
    DEPLOYMENT = "deployment"
    ENDPOINT = "endpoint"
    OTHER = "other"  # a kind this build does not know (a newer registry)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of the registry's Watch feed.

    `name` is the resource's name and `model` the model id it belongs to (a model, a
    version, an alias, a deployment on its PUTs; empty for endpoints, SYNCED and
    PROGRESS). On PUTs the resource itself: `deployment`, `endpoint` or `version`;
    `number` is the version number of a version event (PUT or DELETE) and the version an
    alias points at (alias PUTs); `alias` the alias of an alias event."""

    type: EventType
    revision: int
    kind: ResourceKind = ResourceKind.OTHER
    name: str = ""
    model: str = ""
    deployment: DeploymentSpec | None = None
    endpoint: EndpointSpec | None = None
    version: VersionInfo | None = None
    number: int = 0
    alias: str = ""

    @property
    def id(self) -> str:
        """The id of a deployment or endpoint event (the last part of its name)."""
        return self.name.rpartition("/")[2]
