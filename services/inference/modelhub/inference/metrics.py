"""Prometheus metrics of the inference service, in the runtime's own CollectorRegistry,
and the per-version observer the batcher reports to (metrics + statistics)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelhub.common.interceptors import LATENCY_BUCKETS
from modelhub.common.names import is_resource_id
from modelhub.inference.stats import VersionStats

if TYPE_CHECKING:
    from modelhub.inference.batcher import Job

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


# The label of variants beyond the cap or not validly named: no valid name starts with "_".
OTHER_VARIANT = "_other"


class VariantLabels:
    """Which `variant` label a request gets. The value comes from a request header that
    anyone who reaches the port can set, so it labels a series only when the registry
    says the endpoint has that variant (`exists`, from the endpoints the server follows;
    without a registry: any valid variant name) and its (endpoint, variant) pair is one of
    the first `cap` seen; every other value becomes `OTHER_VARIANT`, counted in
    `overflow` by reason."""

    def __init__(self, cap: int, overflow: Counter) -> None:
        self.cap = cap
        self.exists: Callable[[str, str], bool] | None = None
        self._known: set[tuple[str, str]] = set()
        self._invalid = overflow.labels("variant", "invalid")
        self._unknown = overflow.labels("variant", "unknown")
        self._over_cap = overflow.labels("variant", "cap")

    def __len__(self) -> int:
        return len(self._known)

    def label(self, endpoint: str, variant: str) -> str:
        if not variant:
            return ""
        key = (endpoint, variant)
        if key in self._known:
            return variant
        if not is_resource_id(variant):
            self._invalid.inc()
            return OTHER_VARIANT
        if self.exists is not None and not self.exists(endpoint, variant):
            self._unknown.inc()
            return OTHER_VARIANT
        if len(self._known) >= self.cap:
            self._over_cap.inc()
            return OTHER_VARIANT
        self._known.add(key)
        return variant


class InferenceMetrics:
    """Every inference metric, registered once per server in `registry`."""

    def __init__(self, registry: CollectorRegistry, max_variant_labels: int = 256) -> None:
        self.request_duration = Histogram(
            "modelhub_inference_request_duration_seconds",
            "Time from receiving an inference request to answering it. `variant`: the "
            "endpoint variant Envoy routed the request to (header x-modelhub-variant, used "
            "only with x-modelhub-endpoint; empty when called directly; `_other` for a "
            "value that is no valid variant name or beyond the first max_variant_labels "
            "(endpoint, variant) pairs).",
            ["model", "version", "variant", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.label_overflow = Counter(
            "modelhub_inference_label_overflow_total",
            "Requests whose label value was replaced by `_other`, by label and reason "
            "(invalid: not a valid name; cap: past the most distinct values kept).",
            ["label", "reason"],
            registry=registry,
        )
        self.variants = VariantLabels(max_variant_labels, self.label_overflow)
        self.queue_duration = Histogram(
            "modelhub_inference_queue_duration_seconds",
            "Time a request waited in its version's queue before its batch ran.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.compute_duration = Histogram(
            "modelhub_inference_compute_duration_seconds",
            "Time of one ONNX Runtime run (one batch).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "modelhub_inference_batch_size",
            "Rows per ONNX Runtime run.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "modelhub_inference_queue_depth",
            "Requests waiting in a version's queue.",
            ["model", "version"],
            registry=registry,
        )
        self.rejected = Counter(
            "modelhub_inference_rejected_total",
            "Requests refused (queue full) or dropped before compute (deadline passed).",
            ["model", "version", "reason"],
            registry=registry,
        )
        self.loads = Counter(
            "modelhub_inference_model_loads_total",
            "Model version loads, by outcome (ready, failed).",
            ["model", "outcome"],
            registry=registry,
        )
        self.unloads = Counter(
            "modelhub_inference_model_unloads_total",
            "Model version unloads, by cause (unload, evicted, replaced, deployment).",
            ["model", "cause"],
            registry=registry,
        )
        self.loaded_versions = Gauge(
            "modelhub_inference_loaded_versions",
            "Model versions loaded and serving.",
            registry=registry,
        )
        self.memory_bytes = Gauge(
            "modelhub_inference_memory_bytes",
            "Memory the memory budget counts: what loaded versions took when they loaded "
            "(measured: C heap in use after warm-up, at least artifact size × instances), plus "
            "the estimates of versions being loaded.",
            registry=registry,
        )
        self.memory_budget_bytes = Gauge(
            "modelhub_inference_memory_budget_bytes",
            "The memory budget of loaded versions (setting memory_budget_bytes).",
            registry=registry,
        )
        self.version_memory_bytes = Gauge(
            "modelhub_inference_model_memory_bytes",
            "Memory a loaded version holds as the budget counts it (measured when it "
            "loaded); the series goes when the version unloads.",
            ["model", "version"],
            registry=registry,
        )
        # Children resolved once: `labels()` costs a lock and a tuple per call.
        self._request_children: dict[tuple[str, str, str, str], Histogram] = {}

    def observe_request(
        self, model: str, version: str, variant: str, code: str, seconds: float, endpoint: str = ""
    ) -> None:
        """Observe one request. `variant` (with its `endpoint`) is a client-supplied value:
        it is bounded by `variants` before it labels anything."""
        key = (model, version, self.variants.label(endpoint, variant), code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.request_duration.labels(*key)
        child.observe(seconds)

    def for_version(self, model: str, version: str) -> VersionTelemetry:
        return VersionTelemetry(self, model, version)


class VersionTelemetry:
    """What one version's batcher reports: Prometheus children and the statistics."""

    def __init__(self, metrics: InferenceMetrics, model: str, version: str) -> None:
        self.stats = VersionStats()
        self._queue = metrics.queue_duration.labels(model, version)
        self._compute = metrics.compute_duration.labels(model, version)
        self._batch = metrics.batch_size.labels(model, version)
        self._depth = metrics.queue_depth.labels(model, version)
        self._full = metrics.rejected.labels(model, version, "queue_full")
        self._expired = metrics.rejected.labels(model, version, "deadline")

    def batch_done(
        self,
        jobs: Sequence[Job],
        rows: int,
        started: float,
        input_s: float,
        infer_s: float,
        output_s: float,
    ) -> None:
        queue = self._queue
        total_wait = 0.0
        for job in jobs:
            wait = started - job.enqueued
            total_wait += wait
            queue.observe(wait)
        self.stats.queue.add(total_wait, len(jobs))
        self.stats.record_batch(len(jobs), rows, input_s, infer_s, output_s)
        self._compute.observe(infer_s)
        self._batch.observe(rows)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def rejected(self) -> None:
        self.stats.rejected_count += 1
        self._full.inc()

    def expired(self, count: int) -> None:
        self.stats.expired_count += count
        self._expired.inc(count)

    def request_done(self, ok: bool, seconds: float) -> None:
        (self.stats.success if ok else self.stats.fail).add(seconds)
