"""Settings of the inference service (environment prefix MODELHUB_INFERENCE_)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.common.limits import DEFAULT_MAX_REQUEST_BYTES, REQUEST_ENVELOPE_BYTES
from modelhub.common.settings import (
    MONITOR_CLIENT_ALIASES,
    REGISTRY_CLIENT_ALIASES,
    FlatAliases,
    MonitorClientSettings,
    RegistryClientSettings,
    ServiceSettings,
)
from modelhub.inference.cost_model import single_cpu
from modelhub.inference.spec import BatchingPolicy, Device, LoadOptions, RuntimeOptions

__all__ = ["REQUEST_ENVELOPE_BYTES", "InferenceSettings"]


class InferenceSettings(ServiceSettings):
    """Every inference setting, with its default. Batching and runtime values are server
    defaults: a deployment or a LoadModel request may override them per version. The
    registry and monitor clients are nested (`MODELHUB_INFERENCE_REGISTRY__ADDRESS`); their
    flat names (`MODELHUB_INFERENCE_REGISTRY_ADDRESS`, `_REGISTRY_TOKEN`, `_MONITOR_ADDRESS`,
    `_MONITOR_TOKEN`, `_MONITOR_TIMEOUT_S`) still work."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_INFERENCE_", extra="ignore")
    flat_aliases: ClassVar[FlatAliases] = {**REGISTRY_CLIENT_ALIASES, **MONITOR_CLIENT_ALIASES}

    port: int = Field(default=50052, ge=0, le=65535, description="gRPC port; 0 picks one.")

    # Where models come from.
    model_source: Literal["registry", "directory"] = Field(
        default="registry",
        description="`registry`: follow the registry's deployments and download artifacts "
        "from it. `directory`: serve the ONNX files under `model_dir` (no registry).",
    )
    registry: RegistryClientSettings = Field(
        default_factory=RegistryClientSettings,
        description="With model_source=registry: the registry whose deployments this "
        "server follows and whose artifacts it downloads (reader role suffices).",
    )
    model_dir: str = Field(
        default="",
        description="With model_source=directory: folder of `<model>.onnx`, "
        "`<model>/<version>.onnx` or `<model>/<version>/model.onnx` files.",
    )
    watch_deployments: bool = Field(
        default=True,
        description="Follow the registry's deployments (load what they select, unload what "
        "they drop). Off: versions load only on request or through LoadModel.",
    )
    cache_dir: str = Field(
        default="var/cache",
        description="Local artifact cache (files by sha256, verified on every load).",
    )
    cache_max_bytes: int = Field(
        default=0,
        ge=0,
        description="Most bytes the artifact cache keeps on disk (least recently used entries "
        "go first); 0 = unlimited.",
    )
    resolve_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a resolved alias or default version (and a miss) is reused "
        "before asking the registry again; watch events invalidate it sooner.",
    )

    default_alias: str = Field(
        default="champion",
        description="A model name without a version (and without a deployment choosing its "
        "primary version) runs the version this alias points at, else the newest READY "
        "version. Empty: always the newest READY version.",
    )

    # Lifecycle.
    load_on_demand: bool = Field(
        default=True,
        description="Load a version that is not loaded when a request (ModelInfer, "
        "ModelStreamInfer, REST infer, or metadata of a version whose schema is unknown) "
        "names it; the first request waits for the load, within the memory budget. Only "
        "callers with the role LoadModel needs (admin) trigger such a load, unless a "
        "deployment names the version; others get PERMISSION_DENIED (reason "
        "LOAD_NOT_PERMITTED). Off: such requests fail with UNAVAILABLE (MODEL_NOT_READY), "
        "or NOT_FOUND for a model this server does not serve.",
    )
    memory_budget_bytes: int = Field(
        default=8 << 30,
        gt=0,
        description="Memory the loaded versions may hold, counted from what each really "
        "took when it loaded (the memory its sessions held once built and warmed up, "
        "measured on the C heap; at least artifact size × instances). Loading past it "
        "evicts the least recently used versions that no deployment pins, or is refused "
        "with RESOURCE_EXHAUSTED (reason MEMORY_BUDGET).",
    )
    memory_estimate_factor: float = Field(
        default=1.25,
        ge=1.0,
        description="A version that has not loaded here before is admitted on an estimate "
        "of artifact size × instances × this factor (later loads use what it measured); "
        "the budget is checked again with the measured figure once it has loaded.",
    )
    cpu_memory_arena: bool = Field(
        default=True,
        description="ONNX Runtime's CPU memory arena: each session keeps the largest "
        "intermediate buffers its runs needed (faster runs; counted in the version's "
        "measured memory, which includes a warm-up at max_batch_size, and freed on unload). "
        "Off: runs allocate and free their buffers.",
    )
    warmup: bool = Field(
        default=True,
        description="Run each new session on zero inputs (batch 1 and max_batch_size) "
        "before it takes traffic; the timings also seed the batch cost curve.",
    )

    # ONNX Runtime defaults.
    device: Device = Field(
        default=Device.AUTO,
        description="`auto`: CUDA when it really works, else CPU; `cpu`; `gpu` (fail "
        "without CUDA).",
    )
    intra_op_threads: int = Field(default=1, ge=1, description="Intra-op threads per session.")
    inter_op_threads: int = Field(default=1, ge=1, description="Inter-op threads per session.")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        default="all", description="ONNX Runtime graph optimization level."
    )
    instance_count: int = Field(
        default=1, ge=1, description="Sessions per version, each with its own executor."
    )

    # Adaptive batching defaults.
    max_batch_size: int = Field(default=64, ge=1, description="Most rows in one run.")
    max_queue_delay_us: int = Field(
        default=2000,
        ge=0,
        description="Upper bound on holding a request back to grow a batch; the batcher "
        "holds only when its cost model says waiting pays.",
    )
    max_queue_size: int = Field(
        default=1024,
        ge=1,
        description="Requests that may wait per version; more get RESOURCE_EXHAUSTED.",
    )
    priority_levels: int = Field(
        default=1, ge=1, description="Priority levels (request parameter `priority`, 1 first)."
    )
    default_timeout_us: int = Field(
        default=0, ge=0, description="Deadline for requests that carry none; 0: none."
    )
    inline_compute_us: float | None = Field(
        default=None,
        ge=0,
        description="Runs predicted to take less than this run on the event loop thread "
        "instead of the session's own thread (a hand-off costs two context switches). "
        "Unset: 1000 when the process may use only one CPU (a thread buys no parallelism "
        "there), 100 otherwise. 0: always use the thread.",
    )

    def inline_threshold_s(self) -> float:
        if self.inline_compute_us is not None:
            return self.inline_compute_us / 1e6
        return 1e-3 if single_cpu() else 1e-4

    # Requests.
    max_request_bytes: int = Field(
        default=DEFAULT_MAX_REQUEST_BYTES,
        gt=0,
        description="Largest tensor payload of one request; larger ones get "
        "RESOURCE_EXHAUSTED (reason PAYLOAD_TOO_LARGE). It also bounds the gRPC messages "
        "the server accepts: this plus `REQUEST_ENVELOPE_BYTES` (1 MiB, for names, shapes "
        "and parameters; at most max_message_bytes). gRPC refuses a larger message "
        "(RESOURCE_EXHAUSTED, 'Received message larger than max') before assembling it.",
    )
    max_variant_labels: int = Field(
        default=256,
        ge=0,
        description="Most distinct (endpoint, variant) pairs that label the request "
        "duration histogram. Variants come from a request header that anyone reaching the "
        "port can set: further pairs, and values that are no valid variant name, are "
        "labelled `_other` (counted in modelhub_inference_label_overflow_total).",
    )

    def max_receive_bytes(self) -> int:
        """The gRPC receive limit: a request's tensor data limit plus its envelope."""
        return min(self.max_message_bytes, self.max_request_bytes + REQUEST_ENVELOPE_BYTES)

    # Monitor.
    monitor: MonitorClientSettings = Field(
        default_factory=MonitorClientSettings,
        description="The monitor events and audit records go to (publisher role needed); "
        "no address: no events are sent (and none are built).",
    )
    event_buffer_size: int = Field(
        default=10_000,
        ge=1,
        description="Events waiting to be sent; when full, new events are dropped (counted).",
    )
    event_batch_size: int = Field(default=500, ge=1, description="Events per IngestEvents batch.")
    event_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Events are sent at least this often (sooner when a batch fills).",
    )
    event_sample_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Fraction of events that carry sampled input and output values (the "
        "first row) for drift detection. Shadow copies and mirrored primaries always carry "
        "the first output row for the shadow comparison.",
    )
    event_max_values: int = Field(
        default=32, ge=1, description="Most input (and output) values sampled per event."
    )
    event_buffer_bytes: int = Field(
        default=16 << 20,
        ge=1,
        description="Estimated memory the waiting events may hold (sampled values "
        "included); past it, new events are dropped (counted, reason buffer_bytes).",
    )

    # Payload audit log (docs/audit.md): endpoints' audit policies come from the registry.
    audit_max_record_bytes: int = Field(
        default=256 << 10,
        ge=4096,
        description="Cap of one audit record's encoded size (payloads included); tensors "
        "are cut to their first values to fit (the record and tensor say `truncated`).",
    )
    audit_buffer_size: int = Field(
        default=1000,
        ge=1,
        description="Audit records waiting to be sent to the monitor; when full, new "
        "records are dropped (counted, reason buffer_full).",
    )
    audit_buffer_bytes: int = Field(
        default=32 << 20,
        ge=1,
        description="Estimated memory the waiting audit records may hold; past it, new "
        "records are dropped (counted, reason buffer_bytes).",
    )
    audit_batch_size: int = Field(
        default=50, ge=1, description="Audit records per IngestAuditRecords call."
    )
    audit_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Audit records are sent at least this often (sooner when a batch fills).",
    )

    # Processes.
    workers: int = Field(
        default=1,
        ge=1,
        description="Server processes sharing the port (SO_REUSEPORT), each with its own "
        "sessions and batchers. With a fixed metrics_port, worker i exposes metrics on "
        "metrics_port + i.",
    )

    reuse_port: bool = Field(
        default=False,
        description="Bind with SO_REUSEPORT so that several processes share the port (the "
        "`workers` supervisor sets it for its children).",
    )

    def load_options(self) -> LoadOptions:
        """The server-wide defaults every version starts from."""
        return LoadOptions(
            batching=BatchingPolicy(
                max_batch_size=self.max_batch_size,
                max_queue_delay_s=self.max_queue_delay_us / 1e6,
                max_queue_size=self.max_queue_size,
                priority_levels=self.priority_levels,
                default_timeout_s=self.default_timeout_us / 1e6,
            ),
            runtime=RuntimeOptions(
                device=self.device,
                intra_op_threads=self.intra_op_threads,
                inter_op_threads=self.inter_op_threads,
                graph_optimization=self.graph_optimization,
                instance_count=self.instance_count,
            ),
        )
