"""Settings shared by every service. Each service subclasses `ServiceSettings` with its own
environment prefix (MODELHUB_REGISTRY_, MODELHUB_INFERENCE_, …); authentication and logging
settings are common to all services (MODELHUB_AUTH_*, MODELHUB_LOG_*). Settings are built in
each service's `main()` and passed down; nothing is read at import time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelhub.common.auth import Authenticator, Role, parse_tokens


class AuthSettings(BaseSettings):
    """Bearer-token authentication (MODELHUB_AUTH_*)."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_AUTH_", extra="ignore")

    tokens: str = Field(
        default="",
        description="Comma-separated `token:role[:name]` entries (roles: reader, publisher, "
        "admin). Empty disables authentication.",
    )
    tokens_file: str = Field(
        default="", description="A file holding token entries, one per line (added to tokens)."
    )
    anonymous_role: str = Field(
        default="",
        description="Role granted to calls without a token when authentication is on "
        "(e.g. `reader` to leave reads and inference open). Empty: token required.",
    )

    def build(self) -> Authenticator:
        spec = self.tokens
        if self.tokens_file:
            with open(self.tokens_file, encoding="utf-8") as fh:
                spec = spec + "," + fh.read()
        anonymous = Role.parse(self.anonymous_role) if self.anonymous_role else None
        return Authenticator(parse_tokens(spec), anonymous)


class LogSettings(BaseSettings):
    """Logging (MODELHUB_LOG_*)."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_LOG_", extra="ignore")

    level: str = Field(default="INFO", description="Root log level.")
    format: Literal["json", "text"] = Field(
        default="json", description="`json`: one JSON object per line with the trace id."
    )


class ServiceSettings(BaseSettings):
    """Network and lifecycle settings every service has; subclasses set the env prefix."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the gRPC server binds to.")
    port: int = Field(default=0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_host: str = Field(default="127.0.0.1", description="Prometheus endpoint address.")
    metrics_port: int = Field(
        default=0, ge=-1, le=65535, description="Prometheus port; 0 picks one, -1 disables."
    )
    grace_period_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight calls may finish."
    )
    drain_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="On SIGTERM, how long to report NOT_SERVING before refusing new calls, "
        "so load balancers move away first.",
    )
    max_message_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Largest gRPC message accepted or sent."
    )
    ready_file: str = Field(
        default="",
        description="When set, a JSON file {port, metrics_port, pid} written once serving "
        "(for process supervisors and tests).",
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    def max_receive_bytes(self) -> int:
        """Largest message the gRPC server accepts: gRPC refuses a larger one
        (RESOURCE_EXHAUSTED) before it is ever assembled. `max_message_bytes` unless a
        service knows its requests are smaller."""
        return self.max_message_bytes
