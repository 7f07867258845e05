"""Monitor settings (environment variables MODELHUB_MONITOR_*), built in `main()`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.common.settings import (
    REGISTRY_CLIENT_ALIASES,
    FlatAliases,
    RegistryClientSettings,
    ServiceSettings,
)

# The longest window: samples, buckets and request ids older than this are not kept.
RETENTION_S = 3600


class ProfileRegistrySettings(RegistryClientSettings):
    """The registry the monitor reads data profiles from: none unless an address is given,
    and a shorter deadline (a drift report waits for it)."""

    address: str = Field(
        default="",
        description="host:port of the registry, to read versions' data profiles as drift "
        "baselines. Empty: only baselines set through the monitor are used.",
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Deadline of one registry call.")


class MonitorSettings(ServiceSettings):
    """Everything the monitor can be told. Caps bound memory: what does not fit is dropped
    and counted, never kept."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_MONITOR_", extra="ignore")
    flat_aliases: ClassVar[FlatAliases] = REGISTRY_CLIENT_ALIASES

    port: int = Field(default=50054, ge=0, le=65535, description="gRPC port; 0 picks one.")
    database_url: str = Field(
        default="sqlite+aiosqlite:///var/monitor.db",
        description="SQLAlchemy async URL of the database holding alert rules, baselines "
        "and drift settings (`postgresql+psycopg://…` in production). Bring it up to date "
        "with `python -m modelhub.monitor.migrate upgrade`.",
    )
    max_series: int = Field(
        default=2000,
        gt=0,
        description="Most (model, version, endpoint, variant, source) series kept. A busy "
        "series takes up to ~150 KB; events of new series beyond the cap are dropped.",
    )
    max_history_series: int = Field(
        default=2000,
        ge=0,
        description="Most series that keep the last hour in 10-second steps for "
        "QueryTimeSeries: about 77 KiB each whatever the traffic, taken at a series' first "
        "event (2,000: about 150 MiB). A series beyond it is left out of QueryTimeSeries "
        "until one holding history is dropped or records nothing for an hour; 0 turns time "
        "series off.",
    )
    max_shadow_series: int = Field(
        default=500, gt=0, description="Most (endpoint, shadow, model, version) series kept."
    )
    max_sampled_versions: int = Field(
        default=200, gt=0, description="Most model versions whose feature samples are kept."
    )
    max_features: int = Field(
        default=128,
        gt=0,
        description="Most distinct feature (and output) names sampled per model version.",
    )
    samples_per_bucket: int = Field(
        default=256,
        gt=0,
        description="Reservoir size per feature and 1-minute bucket: a 1 h drift window "
        "sees up to 60 times this many values per feature.",
    )
    max_prediction_labels: int = Field(
        default=64,
        gt=0,
        description="Distinct prediction labels counted per bucket; more go under `other`.",
    )
    max_tracked_requests: int = Field(
        default=100_000,
        gt=0,
        description="Request ids remembered for joining outcomes (oldest forgotten first).",
    )
    join_window_s: float = Field(
        default=3600.0,
        gt=0,
        le=RETENTION_S,
        description="How long after a request an outcome may still be attributed to it.",
    )
    shadow_join_window_s: float = Field(
        default=60.0,
        gt=0,
        le=RETENTION_S,
        description="How long the first half of a shadow comparison (a mirrored primary's "
        "event or a shadow's) waits for the other half with the same request id; unjoined "
        "halves then expire (counted).",
    )
    max_pending_shadow_joins: int = Field(
        default=20_000,
        gt=0,
        description="Request ids waiting for their other shadow-comparison half (about 1 KB "
        "each); beyond it the oldest are dropped (counted).",
    )
    max_clock_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="Events stamped further than this in the future are rejected.",
    )
    sketch_relative_accuracy: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Relative error bound of latency quantiles (DDSketch accuracy).",
    )
    sketch_max_bins: int = Field(
        default=2048,
        ge=16,
        description="Most bins per quantile sketch; beyond it the lowest bins collapse.",
    )
    evaluation_interval_s: float = Field(
        default=10.0, gt=0, description="How often alert rules are evaluated."
    )
    resolved_retention_s: float = Field(
        default=900.0,
        ge=0,
        description="How long a resolved alert stays in ListAlerts before it is forgotten.",
    )
    max_rules: int = Field(default=1000, gt=0, description="Most alert rules stored.")
    max_watchers: int = Field(default=64, gt=0, description="Most concurrent WatchAlerts streams.")
    watcher_queue_size: int = Field(
        default=1000,
        gt=0,
        description="Alert events buffered per watcher; a watcher further behind is ended.",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one webhook POST.")
    max_webhooks_in_flight: int = Field(
        default=16,
        gt=0,
        description="Concurrent webhook POSTs; transitions beyond it are not posted (counted).",
    )
    registry: ProfileRegistrySettings = Field(
        default_factory=ProfileRegistrySettings,
        description="The registry whose versions' data profiles are the default drift "
        "baselines (`MODELHUB_MONITOR_REGISTRY__ADDRESS`, `__TOKEN`, `__TIMEOUT_S`; the flat "
        "`MODELHUB_MONITOR_REGISTRY_ADDRESS`, `_TOKEN`, `_TIMEOUT_S` still work). The "
        "monitor follows its Watch feed, so a changed profile is read again.",
    )
    drift_psi: float = Field(default=0.2, gt=0, description="Default PSI threshold.")
    drift_js: float = Field(
        default=0.1, gt=0, le=1, description="Default Jensen–Shannon distance threshold."
    )
    drift_ks: float = Field(
        default=0.1, gt=0, le=1, description="Default Kolmogorov–Smirnov threshold."
    )
    drift_min_samples: int = Field(
        default=100, gt=0, description="Fewer live samples are reported as insufficient."
    )
    audit_max_age_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Payload audit log: records of requests older than this are deleted "
        "(and refused when they arrive).",
    )
    audit_max_bytes: int = Field(
        default=1 << 30,
        gt=0,
        description="Payload audit log: most bytes the stored records take (payloads and a "
        "row overhead); past it the oldest records are deleted.",
    )
    audit_max_record_bytes: int = Field(
        default=1 << 20,
        gt=0,
        description="Payload audit log: records whose encoded payload is larger are refused "
        "(inference cuts its records to MODELHUB_INFERENCE_AUDIT_MAX_RECORD_BYTES, 256 KiB).",
    )
    audit_retention_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often audit retention runs besides after each stored batch (it "
        "also re-reads the stored total, for replicas sharing one database).",
    )
    drift_p_value: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Significance a drift score must also reach (guards small samples).",
    )
