"""Settings shared by every service. Each service subclasses `ServiceSettings` with its own
environment prefix (MODELHUB_REGISTRY_, MODELHUB_INFERENCE_, …); authentication and logging
settings are common to all services (MODELHUB_AUTH_*, MODELHUB_LOG_*), and so is mutual TLS
(MODELHUB_TLS_*). Settings are built in each service's `main()` and passed down; nothing is
read at import time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
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


class TlsSettings(BaseSettings):
    """Mutual TLS between the services, and from Envoy to them (MODELHUB_TLS_*): one set of
    files for the whole suite, off by default. With the three files set, every gRPC server
    requires a client certificate signed by `ca_file`, and every channel a service opens
    presents `cert_file`/`key_file` and verifies the server against `ca_file`."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_TLS_", extra="ignore")

    ca_file: str = Field(
        default="", description="PEM CA bundle that signs the suite's certificates."
    )
    cert_file: str = Field(
        default="",
        description="PEM certificate this process presents, as a server and as a client "
        "(extended key usage serverAuth and clientAuth).",
    )
    key_file: str = Field(default="", description="PEM private key of `cert_file`.")
    server_name: str = Field(
        default="",
        description="Name the clients verify in the servers' certificates instead of the "
        "host they dial (one certificate for every service, e.g. `modelhub`).",
    )

    @model_validator(mode="after")
    def _all_or_none(self) -> TlsSettings:
        files = {"ca_file": self.ca_file, "cert_file": self.cert_file, "key_file": self.key_file}
        missing = [name for name, value in files.items() if not value]
        if 0 < len(missing) < len(files):
            raise ValueError(
                f"mutual TLS needs MODELHUB_TLS_CA_FILE, _CERT_FILE and _KEY_FILE together; "
                f"missing: {', '.join(missing)}"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.ca_file)

    @classmethod
    def off(cls) -> TlsSettings:
        """Plaintext, whatever the environment says."""
        return cls(ca_file="", cert_file="", key_file="")


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
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="Mutual TLS with the other services and Envoy (MODELHUB_TLS_*, shared by "
        "every service; off by default).",
    )

    def max_receive_bytes(self) -> int:
        """Largest message the gRPC server accepts: gRPC refuses a larger one
        (RESOURCE_EXHAUSTED) before it is ever assembled. `max_message_bytes` unless a
        service knows its requests are smaller."""
        return self.max_message_bytes
