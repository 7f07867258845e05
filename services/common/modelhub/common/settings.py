"""Settings shared by every service. Each service subclasses `ServiceSettings` with its own
environment prefix (MODELHUB_REGISTRY_, MODELHUB_INFERENCE_, …); authentication and logging
settings are common to all services (MODELHUB_AUTH_*, MODELHUB_LOG_*), and so is mutual TLS
(MODELHUB_TLS_*). Settings are built in each service's `main()` and passed down; nothing is
read at import time.

How a service calls another is one nested model, `RegistryClientSettings` or
`MonitorClientSettings`, under the service's prefix with `__` between the levels:
`MODELHUB_INFERENCE_REGISTRY__ADDRESS`, `MODELHUB_ROUTER_MONITOR__TOKEN`. The flat names
these settings had before (`MODELHUB_INFERENCE_REGISTRY_ADDRESS`, and `registry_address=`
as a keyword) still work, as aliases: a service lists them in `flat_aliases`. Where both
are given, the nested variable wins over the flat one, and a keyword over both."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

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


class RegistryClientSettings(BaseModel):
    """How a service reaches the registry (`{PREFIX}REGISTRY__*`); TLS is the suite's
    (MODELHUB_TLS_*)."""

    model_config = ConfigDict(extra="ignore")

    address: str = Field(
        default="127.0.0.1:50051", description="The registry's gRPC address (host:port)."
    )
    token: str = Field(
        default="",
        description="Bearer token for the registry, when its authentication is on (reader "
        "role suffices).",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, description="Deadline of one registry call (not of the Watch)."
    )


class MonitorClientSettings(BaseModel):
    """How a service reaches the monitor (`{PREFIX}MONITOR__*`); TLS is the suite's."""

    model_config = ConfigDict(extra="ignore")

    address: str = Field(
        default="", description="The monitor's gRPC address (host:port); empty: none."
    )
    token: str = Field(
        default="", description="Bearer token for the monitor (publisher role needed)."
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Bound on each call to the monitor.")


FlatAliases = Mapping[str, tuple[str, str]]
# The flat names of the client settings, before they were nested: name → (group, field).
REGISTRY_CLIENT_ALIASES: FlatAliases = {
    "registry_address": ("registry", "address"),
    "registry_token": ("registry", "token"),
    "registry_timeout_s": ("registry", "timeout_s"),
}
MONITOR_CLIENT_ALIASES: FlatAliases = {
    "monitor_address": ("monitor", "address"),
    "monitor_token": ("monitor", "token"),
    "monitor_timeout_s": ("monitor", "timeout_s"),
}


class FlatAliasEnv(PydanticBaseSettingsSource):
    """The flat environment variables of nested settings (`{prefix}{flat name}`, any
    case), as the nested values they stand for."""

    def __init__(self, settings_cls: type[BaseSettings], aliases: FlatAliases) -> None:
        super().__init__(settings_cls)
        self._aliases = aliases

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).lower()
        environ = {key.lower(): value for key, value in os.environ.items()}
        values: dict[str, Any] = {}
        for flat, (group, name) in self._aliases.items():
            value = environ.get(prefix + flat)
            if value is not None:
                values.setdefault(group, {})[name] = value
        return values


def _lift(data: dict[str, Any], flat: str, group: str, name: str) -> None:
    """Move the keyword `flat` into `data[group][name]`."""
    value = data.pop(flat)
    nested = data.get(group)
    if isinstance(nested, BaseModel):
        nested = nested.model_dump()
    merged = dict(nested) if isinstance(nested, Mapping) else {}
    merged[name] = value
    data[group] = merged


class ServiceSettings(BaseSettings):
    """Network and lifecycle settings every service has; subclasses set the env prefix
    and list the flat names of their nested settings in `flat_aliases`."""

    model_config = SettingsConfigDict(
        env_prefix="MODELHUB_", extra="ignore", env_nested_delimiter="__"
    )
    flat_aliases: ClassVar[FlatAliases] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: the nested variables over their flat aliases.
        flat = FlatAliasEnv(settings_cls, cls.flat_aliases)
        return init_settings, env_settings, flat, dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _flat_keywords(cls, data: Any) -> Any:
        """`registry_address=…` as a keyword: the nested value it stands for."""
        if isinstance(data, dict) and cls.flat_aliases:
            data = dict(data)
            for flat, (group, name) in cls.flat_aliases.items():
                if flat in data:
                    _lift(data, flat, group, name)
        return data

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
