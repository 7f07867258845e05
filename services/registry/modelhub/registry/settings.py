"""Registry settings (environment prefix MODELHUB_REGISTRY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.common.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    """Settings of the registry service."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_REGISTRY_", extra="ignore")

    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port; 0 picks one.")
    metrics_port: int = Field(default=9101, ge=-1, le=65535, description="Prometheus port.")
    database_url: str = Field(
        default="sqlite+aiosqlite:///var/registry.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or "
        "postgresql+psycopg://user@host/db.",
    )
    blob_dir: str = Field(
        default="var/blobs", description="Content-addressed artifact store (sha256 keyed)."
    )
    max_upload_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="Largest artifact accepted (RESOURCE_EXHAUSTED)."
    )
    upload_session_ttl_s: float = Field(
        default=3600.0,
        gt=0,
        description="An upload session (StartUpload/AppendUpload/CommitUpload, the HTTP "
        "upload) that sees no append or commit this long expires; its bytes are removed.",
    )
    max_upload_sessions: int = Field(
        default=64,
        gt=0,
        description="Upload sessions holding bytes at once, over every replica sharing the "
        "blob folder; StartUpload answers RESOURCE_EXHAUSTED past it. Each holds up to "
        "max_upload_bytes on disk.",
    )
    watch_history: int = Field(
        default=100_000,
        ge=100,
        description="Changes kept for Watch replay; older revisions answer OUT_OF_RANGE.",
    )
    watch_progress_s: float = Field(
        default=5.0, gt=0, description="Idle watchers get a PROGRESS event this often."
    )
    watch_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often watchers look for changes committed by other registry replicas.",
    )
    check_schema: bool = Field(
        default=True, description="Refuse to start when the database schema is not current."
    )
    cleanup_orphans: bool = Field(
        default=True,
        description="At start, remove crash debris: temp files no upload holds (file lock) "
        "and blobs no version references or live upload claims. Safe with several replicas "
        "sharing the blob folder and database.",
    )
    claim_grace_s: float = Field(
        default=600.0,
        gt=0,
        description="An upload's claim on its blob (taken just before the blob moves into "
        "place, dropped with the version insert) protects it this long from other "
        "replicas' cleanup; older claims belong to uploads that died. On a blob folder "
        "without file locks, temp files untouched this long count as debris too.",
    )
