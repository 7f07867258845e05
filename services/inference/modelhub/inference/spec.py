"""Plain value types the inference domain passes around: the batching/runtime options a
version is loaded with. Tensor specs, model schemas, version descriptions and devices are
the registry contract's (`modelhub.common.contract`), re-exported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from modelhub.common.contract import (
    DeploymentSpec,
    Device,
    ModelSchema,
    TensorSpec,
    VersionInfo,
    VersionKey,
)
from modelhub.common.errors import InvalidArgumentError
from modelhub.common.serving import BatchingConfig, RuntimeConfig

__all__ = [
    "BatchingOverrides",
    "BatchingPolicy",
    "Device",
    "LoadOptions",
    "LoadOverrides",
    "ModelSchema",
    "RuntimeOptions",
    "RuntimeOverrides",
    "TensorSpec",
    "VersionInfo",
    "VersionKey",
]

T = TypeVar("T")

MAX_INSTANCES = 64  # sessions per version (the registry's bound for deployments)


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

    @classmethod
    def of(
        cls, batching: BatchingConfig, runtime: RuntimeConfig, instance_count: int, device: Device
    ) -> LoadOverrides:
        """Settings as the API carries them (zero / empty: the server default) as
        overrides; InvalidArgumentError for values out of range."""
        batching = batching.validate("batching")
        runtime = runtime.validate("runtime")
        if not 0 <= instance_count <= MAX_INSTANCES:
            raise InvalidArgumentError(
                f"instance_count must be between 0 and {MAX_INSTANCES}, got {instance_count}",
                field="instance_count",
            )
        return cls(
            BatchingOverrides(
                max_batch_size=_positive(batching.max_batch_size),
                max_queue_delay_s=_seconds(batching.max_queue_delay_us),
                max_queue_size=_positive(batching.max_queue_size),
                priority_levels=_positive(batching.priority_levels),
                default_timeout_s=_seconds(batching.default_timeout_us),
            ),
            _runtime_overrides(runtime, instance_count, device),
        )

    @classmethod
    def of_deployment(cls, spec: DeploymentSpec) -> LoadOverrides:
        """A deployment's settings as overrides (see `of`)."""
        return cls.of(spec.batching, spec.runtime, spec.instance_count, spec.device)


def _runtime_overrides(config: RuntimeConfig, instances: int, device: Device) -> RuntimeOverrides:
    return RuntimeOverrides(
        device=device,
        intra_op_threads=_positive(config.intra_op_threads),
        inter_op_threads=_positive(config.inter_op_threads),
        graph_optimization=config.graph_optimization or None,
        instance_count=_positive(instances),
    )


def _positive(value: int) -> int | None:
    return value if value > 0 else None


def _seconds(microseconds: int) -> float | None:
    return microseconds / 1e6 if microseconds > 0 else None


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value
