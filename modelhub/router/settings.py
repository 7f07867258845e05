"""Router settings (environment prefix MODELHUB_ROUTER_), built in `main()`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.common.settings import ServiceSettings


def split_addresses(text: str) -> list[str]:
    """`"a:1, b:2"` → `["a:1", "b:2"]` (commas or whitespace separate)."""
    return [part for part in text.replace(",", " ").split() if part]


class RouterSettings(ServiceSettings):
    """Every router setting, with its default. Queues and buffers are bounded: what does
    not fit is dropped and counted, never queued without bound."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_ROUTER_", extra="ignore")

    port: int = Field(default=50053, ge=0, le=65535, description="gRPC port; 0 picks one.")
    metrics_port: int = Field(
        default=9103, ge=-1, le=65535, description="Prometheus port; 0 picks one, -1 disables."
    )

    # Registry.
    registry_address: str = Field(
        default="127.0.0.1:50051", description="The registry's gRPC address (host:port)."
    )
    registry_token: str = Field(
        default="", description="Bearer token for the registry (reader role suffices)."
    )
    watch_retry_max_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait between attempts to re-establish the registry watch "
        "(exponential backoff from 0.1 s, with jitter).",
    )

    # Backends.
    backends: str = Field(
        default="127.0.0.1:50052",
        description="Inference servers (host:port, comma-separated) for plain model names and "
        "for variants whose pool is empty.",
    )
    backend_token: str = Field(
        default="", description="Bearer token for calls to the inference servers, if needed."
    )
    health_check_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often every backend is checked (grpc.health.v1). An unhealthy "
        "backend gets no traffic until a check answers SERVING.",
    )
    health_check_timeout_s: float = Field(
        default=0.5, gt=0, description="A health check not answered within this fails."
    )

    reflect_all: bool = Field(
        default=False,
        description="List every ModelHub service in server reflection, not only the router's: "
        "behind the Envoy front door, where reflection is routed to the router, every service "
        "answers on the one address.",
    )

    # Routing.
    version_ready_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="When a variant's version changes, keep routing to the current one until "
        "the new one reports ready (ModelReady) on the variant's backends, at most this long. "
        "0 switches at once.",
    )
    default_alias: str = Field(
        default="champion",
        description="A plain model name without a version goes to the version this alias "
        "points at, else to the newest READY version. Empty: always the newest READY.",
    )
    generate_request_ids: bool = Field(
        default=True,
        description="Give requests without an `id` a generated one (echoed in the response), "
        "so that every request can be attributed outcomes.",
    )

    # Shadows.
    shadow_queue_size: int = Field(
        default=256,
        ge=1,
        description="Mirrors waiting to be sent; when full, new mirrors are dropped "
        "(counted) and the primary is unaffected.",
    )
    shadow_concurrency: int = Field(
        default=8, ge=1, description="Mirrors in flight at most (the shadow workers)."
    )
    shadow_timeout_s: float = Field(
        default=5.0, gt=0, description="A shadow call not answered within this fails."
    )

    # Monitor.
    monitor_address: str = Field(
        default="",
        description="The monitor's gRPC address; empty: no events are sent (and none are built).",
    )
    monitor_token: str = Field(
        default="", description="Bearer token for the monitor (publisher role needed)."
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
        "first row) for drift detection.",
    )
    event_max_values: int = Field(
        default=32, ge=1, description="Most input (and output) values sampled per event."
    )
    monitor_timeout_s: float = Field(
        default=5.0, gt=0, description="Bound on each call to the monitor."
    )
    max_pending_outcomes: int = Field(
        default=10_000,
        ge=1,
        description="Outcomes waiting to be forwarded to the monitor; more are dropped.",
    )

    # Outcomes.
    outcome_retention_s: float = Field(
        default=3600.0,
        gt=0,
        description="How long the router remembers which variant served a request id.",
    )
    outcome_max_requests: int = Field(
        default=200_000,
        ge=1,
        description="Most request ids remembered (about 150 bytes each); the oldest go first.",
    )

    @property
    def backend_addresses(self) -> list[str]:
        return split_addresses(self.backends)
