"""Plain value types the inference domain passes around: tensor specs, model schemas,
version descriptions and the batching/runtime options a version is loaded with."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model: Open Inference Protocol datatype and shape (-1 =
    dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """A model's inputs and outputs, as read from its graph."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What a model source says about one version: identity, artifact digest, schema."""

    model: str
    version: int
    sha256: str
    size_bytes: int
    schema: ModelSchema | None = None
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.model, self.version)


@dataclass(frozen=True, slots=True, order=True)
class VersionKey:
    """A model version's identity on this server."""

    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}/{self.version}"


class Device(enum.Enum):
    """Where a version runs. AUTO: CUDA when it really works, CPU otherwise."""

    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True, slots=True)
class BatchingPolicy:
    """Effective adaptive-batching settings of one loaded version."""

    max_batch_size: int = 64
    max_queue_delay_s: float = 0.002
    max_queue_size: int = 1024
    priority_levels: int = 1
    default_timeout_s: float = 0.0  # 0: requests without a deadline wait as long as needed


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """ONNX Runtime settings of one loaded version."""

    device: Device = Device.AUTO
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    instance_count: int = 1


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to load a version: batching and runtime settings together."""

    batching: BatchingPolicy = field(default_factory=BatchingPolicy)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)


@dataclass(frozen=True, slots=True)
class BatchingOverrides:
    """Partial batching settings (a deployment's or a LoadModel request's): None = keep
    the server default."""

    max_batch_size: int | None = None
    max_queue_delay_s: float | None = None
    max_queue_size: int | None = None
    priority_levels: int | None = None
    default_timeout_s: float | None = None

    def apply(self, base: BatchingPolicy) -> BatchingPolicy:
        return BatchingPolicy(
            max_batch_size=_pick(self.max_batch_size, base.max_batch_size),
            max_queue_delay_s=_pick(self.max_queue_delay_s, base.max_queue_delay_s),
            max_queue_size=_pick(self.max_queue_size, base.max_queue_size),
            priority_levels=_pick(self.priority_levels, base.priority_levels),
            default_timeout_s=_pick(self.default_timeout_s, base.default_timeout_s),
        )


@dataclass(frozen=True, slots=True)
class RuntimeOverrides:
    """Partial runtime settings: None = keep the server default."""

    device: Device | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: str | None = None
    instance_count: int | None = None

    def apply(self, base: RuntimeOptions) -> RuntimeOptions:
        return RuntimeOptions(
            device=_pick(self.device, base.device),
            intra_op_threads=_pick(self.intra_op_threads, base.intra_op_threads),
            inter_op_threads=_pick(self.inter_op_threads, base.inter_op_threads),
            graph_optimization=_pick(self.graph_optimization, base.graph_optimization),
            instance_count=_pick(self.instance_count, base.instance_count),
        )


@dataclass(frozen=True, slots=True)
class LoadOverrides:
    """What a deployment or a LoadModel request changes from the server defaults."""

    batching: BatchingOverrides = field(default_factory=BatchingOverrides)
    runtime: RuntimeOverrides = field(default_factory=RuntimeOverrides)

    def apply(self, base: LoadOptions) -> LoadOptions:
        return LoadOptions(self.batching.apply(base.batching), self.runtime.apply(base.runtime))


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value
