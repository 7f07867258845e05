"""Serving settings shared by the registry (desired state) and inference (actual state)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from modelhub.common.errors import InvalidArgumentError


class Device(enum.StrEnum):
    AUTO = "auto"  # CUDA when it really works, CPU otherwise
    CPU = "cpu"
    GPU = "gpu"  # CUDA required


GRAPH_OPTIMIZATIONS = ("", "disable", "basic", "extended", "all")


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Adaptive batching settings; 0 means "server default"."""

    max_batch_size: int = 0
    max_queue_delay_us: int = 0
    max_queue_size: int = 0
    priority_levels: int = 0
    default_timeout_us: int = 0

    def validate(self, field: str = "batching") -> BatchingConfig:
        limits = {
            "max_batch_size": (self.max_batch_size, 1 << 20),
            "max_queue_delay_us": (self.max_queue_delay_us, 60_000_000),
            "max_queue_size": (self.max_queue_size, 1 << 24),
            "priority_levels": (self.priority_levels, 16),
            "default_timeout_us": (self.default_timeout_us, 3_600_000_000),
        }
        for name, (value, limit) in limits.items():
            if value < 0 or value > limit:
                raise InvalidArgumentError(
                    f"{field}.{name} must be between 0 and {limit}, got {value}",
                    field=f"{field}.{name}",
                )
        return self


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """ONNX Runtime session settings; 0/empty means "server default"."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = ""

    def validate(self, field: str = "runtime") -> RuntimeConfig:
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value < 0 or value > 256:
                raise InvalidArgumentError(
                    f"{field}.{name} must be between 0 and 256, got {value}",
                    field=f"{field}.{name}",
                )
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise InvalidArgumentError(
                f"{field}.graph_optimization must be one of "
                f"{', '.join(g for g in GRAPH_OPTIMIZATIONS if g)}; "
                f"got {self.graph_optimization!r}",
                field=f"{field}.graph_optimization",
            )
        return self
