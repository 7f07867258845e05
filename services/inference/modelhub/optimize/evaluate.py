"""Measuring a derivative against its parent where the command runs: output error on a
validation set, argmax agreement for classifiers, artifact size, and in-process latency
and throughput at batch 1 and at the parent's best batch size."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelhub.common.errors import FailedPreconditionError

# Batch sizes tried for the best throughput (capped by the validation rows).
BATCH_SIZES = (1, 8, 32, 128, 512)


@dataclass(frozen=True)
class EvaluationReport:
    """How a derivative compares with its parent. Ratios are derivative / parent: a
    latency ratio below 1 is faster, a throughput ratio above 1 serves more rows/s."""

    method: str
    validation: str
    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    # Share of rows whose argmax over the first output agrees (classifiers: a first output
    # of shape [rows, classes > 1]); None for other models.
    argmax_agreement: float | None
    size_ratio: float
    latency_ratio_batch1: float
    throughput_ratio_batch1: float
    best_batch_size: int
    latency_ratio_best: float
    throughput_ratio_best: float
    measured_on: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def lines(self) -> list[str]:
        """The report for people, one fact per line."""
        agreement = (
            "n/a (not a classifier)"
            if self.argmax_agreement is None
            else f"{self.argmax_agreement:.2%}"
        )
        return [
            f"method: {self.method}",
            f"validation: {self.validation}",
            f"max |Δ| {self.max_abs_diff:.3g}, mean |Δ| {self.mean_abs_diff:.3g} "
            f"over {self.rows} rows",
            f"argmax agreement: {agreement}",
            f"artifact size: {self.size_ratio:.2f}× the parent's",
            f"batch 1: latency {self.latency_ratio_batch1:.2f}×, throughput "
            f"{self.throughput_ratio_batch1:.2f}×",
            f"batch {self.best_batch_size} (the parent's best): latency "
            f"{self.latency_ratio_best:.2f}×, throughput {self.throughput_ratio_best:.2f}×",
            f"measured on: {self.measured_on}",
        ]


def _session(data: bytes, threads: int, providers: list[str], what: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, options, providers=providers)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise FailedPreconditionError(
            f"the {what} does not run on {', '.join(providers)} here ({first}); evaluate it "
            "where it will be served (fp16 derivatives need a GPU: run the command there)",
            reason="OPTIMIZATION_FAILED",
        ) from exc


def _timed(session: Any, feed: dict[str, np.ndarray], budget_s: float) -> float:
    """Median seconds per run (at least 5 runs, about `budget_s` in all)."""
    session.run(None, feed)  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
        if len(times) >= 1000:
            break
    return statistics.median(times)


def _feed(arrays: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    total = len(next(iter(arrays.values())))
    reps = -(-rows // total)
    return {
        name: np.concatenate([a] * reps)[:rows] if reps > 1 else a[:rows]
        for name, a in arrays.items()
    }


def evaluate(
    parent: bytes,
    derivative: bytes,
    method: str,
    validation: Mapping[str, np.ndarray],
    how: str,
    *,
    threads: int = 1,
    providers: list[str] | None = None,
    budget_s: float = 0.3,
) -> EvaluationReport:
    """Compare `derivative` with `parent` on `validation` (arrays by input name, checked
    by the caller). `how` says where the validation rows came from."""
    import onnxruntime as ort

    providers = providers or ["CPUExecutionProvider"]
    base = _session(parent, threads, providers, "parent")
    derived = _session(derivative, threads, providers, "derivative")
    rows = len(next(iter(validation.values())))
    feed = dict(validation)
    want = base.run(None, feed)
    got = derived.run(None, feed)
    diffs = [
        np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64)).ravel()
        for g, w in zip(got, want, strict=True)
    ]
    every = np.concatenate(diffs) if diffs else np.zeros(1)
    first = np.asarray(want[0])
    agreement = None
    if first.ndim == 2 and first.shape[1] > 1:
        agreement = float(np.mean(np.argmax(first, 1) == np.argmax(np.asarray(got[0]), 1)))

    per_batch: dict[int, tuple[float, float]] = {}
    sizes = [b for b in BATCH_SIZES if b <= max(rows, 1)] or [1]
    for batch in sizes:
        batch_feed = _feed(validation, batch)
        per_batch[batch] = (
            _timed(base, batch_feed, budget_s),
            _timed(derived, batch_feed, budget_s),
        )
    best = min(sizes, key=lambda b: per_batch[b][0] / b)  # the parent's most rows/s
    one, top = per_batch[1], per_batch[best]
    measured_on = (
        f"{platform.node() or 'this machine'}: {os.cpu_count()} CPUs, {threads} intra-op "
        f"thread(s), onnxruntime {ort.__version__} on {providers[0]}"
    )
    return EvaluationReport(
        method=method,
        validation=how,
        rows=rows,
        max_abs_diff=float(every.max()),
        mean_abs_diff=float(every.mean()),
        argmax_agreement=agreement,
        size_ratio=len(derivative) / len(parent),
        latency_ratio_batch1=one[1] / one[0],
        throughput_ratio_batch1=one[0] / one[1],
        best_batch_size=best,
        latency_ratio_best=top[1] / top[0],
        throughput_ratio_best=top[0] / top[1],
        measured_on=measured_on,
    )
