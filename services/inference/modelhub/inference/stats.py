"""Per-version statistics in the spirit of Triton's statistics extension: counts and
cumulative durations, plus a histogram of batch sizes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Duration:
    """A count and the total time spent, in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)


@dataclass(slots=True)
class VersionStats:
    """Cumulative statistics of one loaded model version.

    Request-level durations (`queue`, `compute_*`) count each request once: a request
    served in a batch is charged the batch's compute time, as Triton does. `batches`
    holds one entry per batch size (in rows) with the number of runs and their time.
    """

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=dict)
    inference_count: int = 0  # rows
    execution_count: int = 0  # runs
    rejected_count: int = 0
    expired_count: int = 0
    last_inference_ns: int = 0  # wall clock, ns since the epoch

    def record_batch(
        self, requests: int, rows: int, input_s: float, infer_s: float, output_s: float
    ) -> None:
        self.execution_count += 1
        self.inference_count += rows
        self.compute_input.add(input_s * requests, requests)
        self.compute_infer.add(infer_s * requests, requests)
        self.compute_output.add(output_s * requests, requests)
        entry = self.batches.get(rows)
        if entry is None:
            entry = self.batches[rows] = Duration()
        entry.add(infer_s)
        self.last_inference_ns = time.time_ns()
