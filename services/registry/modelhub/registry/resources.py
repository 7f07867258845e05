"""Registry resources as plain domain objects (no grpc, no protobuf)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from modelhub.common.contract import EventType as EventType
from modelhub.common.contract import KeySource as KeySource
from modelhub.common.contract import ModelSchema as ModelSchema
from modelhub.common.contract import StickyKey as StickyKey
from modelhub.common.contract import TensorSpec as TensorSpec
from modelhub.common.contract import VersionSelector as VersionSelector
from modelhub.common.serving import BatchingConfig, Device, RuntimeConfig

# Version selectors, tensor schemas, sticky keys and Watch event types are the contract's
# (`modelhub.common.contract`, immutable), re-exported here: the registry stores and
# answers the same values the other services read.


class VersionStatus(enum.StrEnum):
    READY = "READY"
    ARCHIVED = "ARCHIVED"


class Kind(enum.StrEnum):
    MODEL = "MODEL"
    MODEL_VERSION = "MODEL_VERSION"
    ALIAS = "ALIAS"
    DEPLOYMENT = "DEPLOYMENT"
    ENDPOINT = "ENDPOINT"


@dataclass
class Model:
    id: str
    uid: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    latest_version: int = 0
    create_time: datetime | None = None
    update_time: datetime | None = None
    etag: str = ""


@dataclass
class Source:
    run_id: str = ""
    dataset: str = ""
    commit: str = ""
    uri: str = ""


@dataclass
class Artifact:
    sha256: str
    size_bytes: int
    format: str = "onnx"


@dataclass
class Derivation:
    """An optimized derivative's lineage: its parent version and the method."""

    parent: str  # models/{model}/versions/{version}
    method: str
    parent_sha256: str = ""


# Methods `modelhub versions optimize` builds derivatives with.
DERIVATION_METHODS = ("dynamic-int8", "static-int8", "fp16")


@dataclass
class ModelVersion:
    model: str
    version: int
    uid: str
    artifact: Artifact
    schema: ModelSchema
    status: VersionStatus = VersionStatus.READY
    description: str = ""
    author: str = ""
    source: Source = field(default_factory=Source)
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    # JSON form of a DataProfile (see modelhub.registry.profile); None when not given.
    data_profile: dict[str, Any] | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    etag: str = ""
    derivation: Derivation | None = None
    # JSON form of an EvaluationReport (the derivative's report); None when not given.
    evaluation: dict[str, Any] | None = None


@dataclass
class Alias:
    model: str
    alias: str
    version: int
    update_time: datetime | None = None


@dataclass
class Deployment:
    id: str
    model: str
    versions: list[VersionSelector]
    uid: str = ""
    instance_count: int = 1
    device: Device = Device.AUTO
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    labels: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None
    update_time: datetime | None = None
    etag: str = ""


@dataclass
class Variant:
    name: str
    model: str
    selector: VersionSelector
    weight: float
    pool: list[str] = field(default_factory=list)


@dataclass
class Shadow:
    name: str
    model: str
    selector: VersionSelector
    sample_rate: float
    pool: list[str] = field(default_factory=list)


@dataclass
class AuditPolicy:
    """Which of an endpoint's requests are recorded with their payloads (the payload audit
    log, kept by the monitor); `redact_inputs` are never recorded."""

    sample_rate: float = 0.0
    redact_inputs: list[str] = field(default_factory=list)


@dataclass
class Endpoint:
    id: str
    variants: list[Variant]
    uid: str = ""
    description: str = ""
    sticky_key: StickyKey | None = None
    salt: str = ""
    shadows: list[Shadow] = field(default_factory=list)
    fallback: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None
    update_time: datetime | None = None
    etag: str = ""
    # None: nothing is audited.
    audit: AuditPolicy | None = None


Resource = Model | ModelVersion | Alias | Deployment | Endpoint


@dataclass
class WatchEvent:
    type: EventType
    revision: int
    kind: Kind | None = None
    name: str = ""
    resource: Resource | None = None


T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""
