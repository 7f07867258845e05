"""Router settings (environment prefix MODELHUB_ROUTER_), built in `main()`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.common.errors import InvalidArgumentError
from modelhub.common.settings import (
    MONITOR_CLIENT_ALIASES,
    REGISTRY_CLIENT_ALIASES,
    FlatAliases,
    MonitorClientSettings,
    RegistryClientSettings,
    ServiceSettings,
)


def split_addresses(text: str) -> list[str]:
    """`"a:1, b:2"` → `["a:1", "b:2"]` (commas or whitespace separate)."""
    return [part for part in text.replace(",", " ").split() if part]


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port), the host without brackets (as Envoy's
    `socket_address` and `getaddrinfo` want it); INVALID_ARGUMENT otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise InvalidArgumentError(f"{address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def join_address(host: str, port: int) -> str:
    """(host, port) → `host:port`, an IPv6 host in brackets (`[::1]:50052`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RouterSettings(ServiceSettings):
    """Every router setting, with its default. The registry and monitor clients are nested
    (`MODELHUB_ROUTER_REGISTRY__ADDRESS`); their flat names (`MODELHUB_ROUTER_REGISTRY_ADDRESS`,
    `_REGISTRY_TOKEN`, `_MONITOR_ADDRESS`, `_MONITOR_TOKEN`, `_MONITOR_TIMEOUT_S`) still work."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_ROUTER_", extra="ignore")
    flat_aliases: ClassVar[FlatAliases] = {**REGISTRY_CLIENT_ALIASES, **MONITOR_CLIENT_ALIASES}

    port: int = Field(default=50053, ge=0, le=65535, description="gRPC port; 0 picks one.")
    metrics_port: int = Field(
        default=9103, ge=-1, le=65535, description="Prometheus port; 0 picks one, -1 disables."
    )

    # Registry.
    registry: RegistryClientSettings = Field(
        default_factory=RegistryClientSettings,
        description="The registry the router follows (reader role suffices).",
    )
    watch_retry_max_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait between attempts to re-establish the registry watch "
        "(exponential backoff from 0.1 s, with jitter).",
    )

    # Envoy.
    envoy_config_dir: str = Field(
        default="var/envoy-xds",
        description="The directory Envoy watches for its dynamic configuration (filesystem "
        "xDS): the router writes clusters.yaml and routes.yaml here. Shared with Envoy: the "
        "same host under `make up`, a shared volume in compose, a sidecar in Kubernetes.",
    )
    console_dir: str = Field(
        default="",
        description="The web console's folder as Envoy sees it (deploy/envoy/console in a "
        "checkout, /etc/envoy/console in the Envoy image); its parent holds openapi.json. "
        "The routes then serve /console/ and /openapi.json from these files (Envoy reads "
        "them when it loads the routes, and refuses every route while one is missing). "
        "Empty: no console.",
    )
    config_warm_s: float = Field(
        default=0.5,
        ge=0,
        description="Pause between writing new clusters and the routes that name them (Envoy "
        "warms a new cluster before it serves), and before dropping unused clusters.",
    )
    inference_timeout_s: float = Field(
        default=60.0, gt=0, description="Envoy's timeout for one inference call (all tries)."
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Envoy retries of an inference call that failed UNAVAILABLE or at the "
        "transport level, on another replica; from the second try, the endpoint's fallback "
        "variant serves.",
    )

    # Backends.
    backends: str = Field(
        default="127.0.0.1:50052",
        description="The default pool of inference replicas (host:port, comma-separated): "
        "the same addresses as Envoy's `inference` cluster. Variants and shadows without a "
        "pool of their own use it.",
    )
    backend_token: str = Field(
        default="", description="Bearer token for calls to the inference servers, if needed."
    )
    health_check_timeout_s: float = Field(
        default=0.5, gt=0, description="A readiness probe not answered within this fails."
    )

    replica_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Bound on each call to one inference replica when the router answers "
        "Triton's repository index and statistics for the whole deployment (a replica that "
        "does not answer in time is left out).",
    )
    repository_load_timeout_s: float = Field(
        default=100.0,
        gt=0,
        description="Longest a repository load or unload through the front door waits for "
        "every replica (also bounded by the call's deadline; keep it under Envoy's 120 s "
        "route timeout). A load still running then answers UNAVAILABLE; the deployment "
        "stays.",
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

    # Monitor.
    monitor: MonitorClientSettings = Field(
        default_factory=MonitorClientSettings,
        description="The monitor, where RecordOutcome forwards outcomes (publisher role "
        "needed); no address: RecordOutcome answers FAILED_PRECONDITION.",
    )

    @property
    def backend_addresses(self) -> list[str]:
        return split_addresses(self.backends)
