"""Envoy's dynamic configuration from the routing table: the router is Envoy's control plane.

Envoy reads two files from a directory it watches (filesystem xDS, `path_config_source`
with `watched_directory`): `clusters.yaml` (CDS) and `routes.yaml` (RDS, route
configuration `modelhub`). `snapshot` turns a `RoutingTable` into both; `ConfigWriter`
renames them into place, clusters first (a route naming a cluster Envoy does not have yet
answers 503), and prunes clusters no route names any more only after the routes that
used them were replaced.

What Envoy does with them (see docs/data-plane.md and the routing filter,
deploy/envoy/route_filter/modelhub_route.c):

* Every Open Inference Protocol call passes the routing filter, which reads the model name
  from the message's first bytes (or the `x-modelhub-model` header), sets `x-modelhub-model` and
  `x-modelhub-route` (`endpoint` for a bare name without a version or `endpoints/x`,
  `model` otherwise) and re-selects the route.
* An endpoint's route matches those two headers. Its metadata (namespace
  `modelhub.route`) holds the salt, where the sticky key comes from, the bucket total, the
  shadows (`"{name} {cluster} {threshold} {target}"` each) and the bucket ranges of variants
  that resolve to nothing (`"{lower} {upper} {reason}"` each); the filter computes the
  bucket into `x-modelhub-bucket` and Envoy's weighted clusters, keyed by that header, pick
  the variant. Each weighted cluster
  adds the variant's headers (`x-modelhub-endpoint`, `-variant`, `-target`, `-fallback`).
* Mirrors: one `request_mirror_policies` entry per shadow, naming the cluster through the
  header `x-modelhub-mirror-N` that the filter sets only for sampled keys. Every shadow has
  its own cluster whose upstream header mutation turns the copy into the shadow's request
  (its target, `x-modelhub-shadow: 1`, no fallback).
* Fallback: Envoy retries UNAVAILABLE (and transport failures) on another replica with
  `x-envoy-attempt-count` ≥ 2; inference then serves the `x-modelhub-fallback` target.
* Anything else (plain model names, unknown names) goes to the default inference cluster,
  where inference resolves the name itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from modelhub.common.routing_headers import (
    HEADER_BUCKET,
    HEADER_ENDPOINT,
    HEADER_FALLBACK,
    HEADER_MIRROR_PREFIX,
    HEADER_MIRRORED,
    HEADER_MODEL,
    HEADER_ROUTE,
    HEADER_SHADOW,
    HEADER_TARGET,
    HEADER_VARIANT,
    format_named_target,
    format_target,
)
from modelhub.common.settings import TlsSettings
from modelhub.router import bucketing
from modelhub.router.settings import split_address
from modelhub.router.table import MAX_SHADOWS, EndpointRoute, KeySource, RoutingTable, Target

log = logging.getLogger("modelhub.router.xds")

ROUTE_CONFIG = "modelhub"
CLUSTERS_FILE = "clusters.yaml"
ROUTES_FILE = "routes.yaml"
# The routing filter reads an endpoint route's metadata from this namespace.
ROUTE_NAMESPACE = "modelhub.route"
OIP_PREFIX = "/inference.GRPCInferenceService/"
# REST (the transcoder maps /v2 paths to these services; docs/rest.md).
REST_PREFIX = "/modelhub.rest.v1.InferenceRest/"
REST_REPOSITORY_PREFIX = "/modelhub.rest.v1.RepositoryRest/"
# The Lua filter that rewrites REST errors to the protocol's {"error": "…"} (bootstrap
# filter name), enabled per route on the REST routes.
REST_ERRORS_FILTER = "modelhub.rest_errors"
REST_ERRORS = {
    REST_ERRORS_FILTER: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
        "name": "rest_errors",
    }
}
# Triton's repository and statistics extensions through the front door act on the whole
# deployment: the router answers them (load/unload change the deployment, statistics are
# summed across replicas).
OIP_DEPLOYMENT_METHODS = (
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "ModelStatistics",
)
DEFAULT_CLUSTER = "inference"  # the default inference pool (static, in Envoy's bootstrap)
# Headers only Envoy's route selection reads: not forwarded to inference.
ROUTING_ONLY = (HEADER_BUCKET, HEADER_ROUTE)

_CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
_ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
_EXT = "type.googleapis.com/envoy.extensions."
_RETRY_ON = "unavailable,reset,connect-failure,refused-stream"


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """Mutual TLS from Envoy to the services: the files as Envoy sees them (the suite's
    MODELHUB_TLS_* files, at the same paths in Envoy's container), and the name Envoy sends
    as SNI and expects in the services' certificates (empty: any certificate the CA
    signed)."""

    ca_file: str
    cert_file: str
    key_file: str
    server_name: str = ""

    @classmethod
    def from_settings(cls, tls: TlsSettings) -> UpstreamTls | None:
        if not tls.enabled:
            return None
        return cls(tls.ca_file, tls.cert_file, tls.key_file, tls.server_name)

    def transport_socket(self) -> dict[str, Any]:
        """The cluster's `transport_socket`: an UpstreamTlsContext with ALPN h2 (gRPC)."""
        validation: dict[str, Any] = {"trusted_ca": {"filename": self.ca_file}}
        context: dict[str, Any] = {
            "@type": _EXT + "transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": self.cert_file},
                        "private_key": {"filename": self.key_file},
                    }
                ],
                "validation_context": validation,
            },
        }
        if self.server_name:
            context["sni"] = self.server_name
            validation["match_typed_subject_alt_names"] = [
                {"san_type": "DNS", "matcher": {"exact": self.server_name}}
            ]
        return {"name": "envoy.transport_sockets.tls", "typed_config": context}


@dataclass(frozen=True, slots=True)
class XdsOptions:
    """What the configuration needs beyond the routing table."""

    # host:port of the default inference pool (the bootstrap's `inference` cluster); shadow
    # clusters of shadows without their own pool use these addresses.
    default_pool: tuple[str, ...] = ("127.0.0.1:50052",)
    inference_timeout_s: float = 60.0
    retries: int = 2
    # Mutual TLS to the inference replicas (None: plaintext).
    upstream_tls: UpstreamTls | None = None
    # The web console's files and the OpenAPI document, as Envoy sees them (empty: no
    # console routes). Envoy reads them when it loads the routes: a missing file makes it
    # refuse the whole route configuration.
    console_dir: str = ""
    openapi_file: str = ""


# ---------------------------------------------------------------------------- clusters


def grpc_cluster(
    name: str,
    addresses: Sequence[str],
    *,
    request_headers: Sequence[tuple[str, str]] = (),
    remove_headers: Sequence[str] = (),
    health_checks: bool = True,
    outlier_detection: bool = True,
    tls: UpstreamTls | None = None,
) -> dict[str, Any]:
    """An HTTP/2 (gRPC) cluster over `addresses` with least-request balancing, gRPC health
    checks and outlier ejection; `request_headers` are set on every upstream request (an
    upstream header mutation: they apply to mirrored copies too). With `tls`, Envoy talks
    to the hosts over mutual TLS (health checks too)."""
    endpoints = []
    for address in addresses:
        host, port = split_address(address)
        endpoints.append(
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        )
    protocol: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 1024}},
    }
    if request_headers or remove_headers:
        mutations: list[dict[str, Any]] = [{"remove": header} for header in remove_headers]
        mutations += [
            {
                "append": {
                    "header": {"key": key, "value": value},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            }
            for key, value in request_headers
        ]
        protocol["http_filters"] = [
            {
                "name": "envoy.filters.http.header_mutation",
                "typed_config": {
                    "@type": _EXT + "filters.http.header_mutation.v3.HeaderMutation",
                    "mutations": {"request_mutations": mutations},
                },
            },
            {
                "name": "envoy.filters.http.upstream_codec",
                "typed_config": {"@type": _EXT + "filters.http.upstream_codec.v3.UpstreamCodec"},
            },
        ]
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocol
        },
        # Envoy's defaults (1,024 requests, 3 concurrent retries) would turn a burst of
        # retries after one replica died into failures: the queues that bound load are the
        # inference servers' own (RESOURCE_EXHAUSTED when full).
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": 100_000,
                    "max_pending_requests": 100_000,
                    "max_requests": 100_000,
                    "max_retries": 10_000,
                }
            ]
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    }
    if tls is not None:
        cluster["transport_socket"] = tls.transport_socket()
    if outlier_detection:
        cluster["outlier_detection"] = {
            "consecutive_5xx": 3,
            "consecutive_gateway_failure": 2,
            "consecutive_local_origin_failure": 2,
            "split_external_local_origin_errors": True,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 100,
        }
    if health_checks:
        cluster["health_checks"] = [
            {
                "timeout": "1s",
                "interval": "1s",
                "no_traffic_interval": "2s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
    return cluster


def pool_cluster_name(pool: Sequence[str]) -> str:
    """The cluster of a pool of inference replicas (empty: the default pool)."""
    if not pool:
        return DEFAULT_CLUSTER
    digest = hashlib.sha256(",".join(sorted(pool)).encode()).hexdigest()[:12]
    return f"pool-{digest}"


def failover_cluster_name(primary: str, fallback: str) -> str:
    """The cluster of a variant whose fallback runs on other replicas: the variant's pool
    first, the fallback's second (Envoy's aggregate cluster)."""
    digest = hashlib.sha256(f"{primary}>{fallback}".encode()).hexdigest()[:12]
    return f"failover-{digest}"


def failover_primary_name(primary: str) -> str:
    return f"{primary}-primary"


def failover_primary(
    primary: str, addresses: Sequence[str], tls: UpstreamTls | None = None
) -> dict[str, Any]:
    """The variant's replicas as the first priority of a failover cluster: health-checked
    but never ejected for the errors they answer, so that an UNAVAILABLE answer is retried
    on the fallback's replicas as the fallback (attempt 2) instead of the variant's
    requests moving there wholesale."""
    return grpc_cluster(failover_primary_name(primary), addresses, outlier_detection=False, tls=tls)


def failover_cluster(primary: str, fallback: str) -> dict[str, Any]:
    """An aggregate cluster: traffic goes to the variant's replicas while they are healthy;
    a retry goes to the next priority, the fallback's replicas (the route's retry priority
    `previous_priorities`), where the request's `x-envoy-attempt-count` ≥ 2 makes inference
    serve the fallback variant. When every replica of the variant fails its health checks,
    its requests go to the fallback's replicas at once and run the variant's version there
    (loaded on demand)."""
    return {
        "name": failover_cluster_name(primary, fallback),
        "connect_timeout": "1s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.aggregate",
            "typed_config": {
                "@type": _EXT + "clusters.aggregate.v3.ClusterConfig",
                "clusters": [failover_primary_name(primary), fallback],
            },
        },
    }


def _variant_cluster(target: Target, fallback: Target | None) -> tuple[str, bool]:
    """The cluster a variant's weighted entry names, and whether it is a failover."""
    primary = pool_cluster_name(target.pool)
    if fallback is None or fallback is target:
        return primary, False
    secondary = pool_cluster_name(fallback.pool)
    if secondary == primary:
        return primary, False
    return failover_cluster_name(primary, secondary), True


def shadow_cluster_name(endpoint: EndpointRoute, shadow: str) -> str:
    # "/" cannot occur in endpoint or shadow names: no two shadows share a cluster.
    return f"shadow/{endpoint.id}/{shadow}"


def _target(target: Target) -> str:
    return format_target(target.model, target.version)


def clusters(table: RoutingTable, options: XdsOptions) -> list[dict[str, Any]]:
    """Pool clusters of variants with their own replicas, and one cluster per shadow."""
    out: dict[str, dict[str, Any]] = {}
    for endpoint in table.endpoints.values():
        for variant in endpoint.variants:
            pool = variant.spec.pool
            name = pool_cluster_name(pool)
            if pool and name not in out:
                out[name] = grpc_cluster(name, pool, tls=options.upstream_tls)
        fallback = endpoint.fallback.target if endpoint.fallback is not None else None
        for variant in endpoint.variants:
            if variant.target is None or fallback is None:
                continue
            name, failover = _variant_cluster(variant.target, fallback)
            if failover:
                primary = pool_cluster_name(variant.target.pool)
                out[name] = failover_cluster(primary, pool_cluster_name(fallback.pool))
                out[failover_primary_name(primary)] = failover_primary(
                    primary, variant.target.pool or options.default_pool, options.upstream_tls
                )
                if fallback.pool:
                    fallback_pool = pool_cluster_name(fallback.pool)
                    out.setdefault(
                        fallback_pool,
                        grpc_cluster(fallback_pool, fallback.pool, tls=options.upstream_tls),
                    )
        for shadow in endpoint.shadows[:MAX_SHADOWS]:
            target = shadow.target
            if target is None:
                continue
            name = shadow_cluster_name(endpoint, shadow.spec.name)
            out[name] = grpc_cluster(
                name,
                shadow.spec.pool or options.default_pool,
                request_headers=[
                    (HEADER_ENDPOINT, endpoint.name),
                    (HEADER_VARIANT, shadow.spec.name),
                    (HEADER_TARGET, _target(target)),
                    (HEADER_SHADOW, "1"),
                ],
                remove_headers=[HEADER_FALLBACK, HEADER_MIRRORED],
                # A failing shadow is only compared, never avoided: every sampled key keeps
                # being mirrored to it, so the shadow report counts what really happened.
                outlier_detection=False,
                tls=options.upstream_tls,
            )
    return [out[k] for k in sorted(out)]


# ------------------------------------------------------------------------------ routes


def _key_metadata(endpoint: EndpointRoute) -> dict[str, str]:
    sticky = endpoint.sticky_key
    if sticky is None:
        return {}
    if sticky.source is KeySource.PARAMETER:
        return {"key_parameter": sticky.name}
    return {"key_header": sticky.name.lower()}


def endpoint_route(endpoint: EndpointRoute, options: XdsOptions) -> dict[str, Any]:
    """The route of one endpoint: weighted clusters by bucket, mirrors, retries."""
    fallback = endpoint.fallback
    fallback_target = fallback.target if fallback is not None else None
    weighted: list[dict[str, Any]] = []
    unresolved: list[str] = []
    failovers = False
    for variant, weight in zip(endpoint.variants, endpoint.ranges.weights, strict=True):
        if weight <= 0:
            continue
        target, name = variant.target, variant.spec.name
        if target is None and fallback_target is not None:
            target, name = fallback_target, fallback.spec.name if fallback else name
        if target is None:
            reason = (
                f"variant {variant.spec.name!r} of {endpoint.name} resolves to no READY "
                f"version of models/{variant.spec.model} ({variant.spec.selector.describe()})"
            )
            unresolved.append(f"{variant.range.lower} {variant.range.upper} {reason}")
            weighted.append({"name": DEFAULT_CLUSTER, "weight": weight})
            continue
        headers = [
            (HEADER_ENDPOINT, endpoint.name),
            (HEADER_VARIANT, name),
            (HEADER_TARGET, _target(target)),
        ]
        if fallback is not None and fallback_target is not None and fallback_target is not target:
            fallback_value = format_named_target(
                fallback.spec.name, fallback_target.model, fallback_target.version
            )
            headers.append((HEADER_FALLBACK, fallback_value))
        cluster, failover = _variant_cluster(target, fallback_target)
        failovers = failovers or failover
        weighted.append(
            {
                "name": cluster,
                "weight": weight,
                "request_headers_to_add": [
                    {
                        "header": {"key": k, "value": v},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                    for k, v in headers
                ],
            }
        )
    # One string each (the filter reads lists of strings): name, cluster, threshold, target.
    shadows = [
        f"{s.spec.name} {shadow_cluster_name(endpoint, s.spec.name)} "
        f"{bucketing.threshold(s.spec.sample_rate)} {_target(s.target)}"
        for s in endpoint.shadows[:MAX_SHADOWS]
        if s.target is not None and s.spec.sample_rate > 0
    ]
    metadata: dict[str, Any] = {
        "endpoint": endpoint.name,
        "salt": endpoint.salt,
        "total": bucketing.TOTAL,
        **_key_metadata(endpoint),
    }
    if shadows:
        metadata["shadows"] = shadows
    if unresolved:
        metadata["unresolved"] = unresolved
    action: dict[str, Any] = {
        "weighted_clusters": {"header_name": HEADER_BUCKET, "clusters": weighted},
        "timeout": f"{options.inference_timeout_s:g}s",
        # The client's grpc-timeout bounds the call (and its retries) in Envoy too.
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        "retry_policy": _retry_policy(options.retries, failover=failovers),
    }
    if shadows:
        action["request_mirror_policies"] = [
            {"cluster_header": f"{HEADER_MIRROR_PREFIX}{i}"} for i in range(len(shadows))
        ]
    match_headers = [
        {"name": HEADER_ROUTE, "string_match": {"exact": "endpoint"}},
        {"name": HEADER_MODEL, "string_match": {"exact": endpoint.id}},
    ]
    return {
        "name": f"endpoint-{endpoint.id}",
        "match": {"prefix": OIP_PREFIX, "headers": match_headers},
        "metadata": {"filter_metadata": {ROUTE_NAMESPACE: metadata}},
        "route": action,
        "request_headers_to_remove": list(ROUTING_ONLY),
    }


def endpoint_routes(endpoint: EndpointRoute, options: XdsOptions) -> list[dict[str, Any]]:
    """The endpoint's gRPC route and its REST twin (same decision, REST error bodies)."""
    grpc_route = endpoint_route(endpoint, options)
    rest_route = {
        **grpc_route,
        "name": f"{grpc_route['name']}-rest",
        "match": {**grpc_route["match"], "prefix": REST_PREFIX},
        "typed_per_filter_config": REST_ERRORS,
    }
    return [grpc_route, rest_route]


def _retry_policy(retries: int, *, failover: bool = False) -> dict[str, Any]:
    # Inference is a pure function of its inputs: a call that failed UNAVAILABLE (not
    # processed) is safe to retry, on another replica than the one that just failed (and,
    # through a failover cluster, on the fallback variant's replicas).
    policy: dict[str, Any] = {
        "retry_on": _RETRY_ON,
        "num_retries": retries,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": _EXT + "retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 10,
    }
    if failover:
        policy["retry_priority"] = {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": _EXT + "retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 1,
            },
        }
    return policy


def _prefix(prefix: str, cluster: str, timeout: str, **extra: Any) -> dict[str, Any]:
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": timeout, **extra}}


def _regex(regex: str, cluster: str, timeout: str, **extra: Any) -> dict[str, Any]:
    return {
        "match": {"safe_regex": {"regex": regex}},
        "route": {"cluster": cluster, "timeout": timeout, **extra},
    }


def service_routes(options: XdsOptions) -> list[dict[str, Any]]:
    """Routes that do not depend on the routing table: plain model names and the control
    plane services."""
    registry = "modelhub\\.registry\\.v1\\.RegistryService"
    monitor = "modelhub\\.monitor\\.v1\\.MonitorService"
    inference = {
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        "retry_policy": _retry_policy(options.retries),
    }
    rest = {"typed_per_filter_config": REST_ERRORS}
    return [
        # Plain model names and unknown names: inference resolves them.
        _prefix(OIP_PREFIX, DEFAULT_CLUSTER, f"{options.inference_timeout_s:g}s", **inference)
        | {"request_headers_to_remove": list(ROUTING_ONLY)},
        _prefix(REST_PREFIX, DEFAULT_CLUSTER, f"{options.inference_timeout_s:g}s", **inference)
        | {"request_headers_to_remove": list(ROUTING_ONLY)}
        | rest,
        _prefix(REST_REPOSITORY_PREFIX, "router", "120s") | rest,
        preflight_route(),
        # A /v2 path the transcoder did not map (it answers 404 itself; this route gives
        # that answer the REST error body).
        {
            "match": {"prefix": "/v2"},
            "direct_response": {
                "status": 404,
                "body": {"inline_string": '{"error":"no such REST path"}'},
            },
        }
        | rest,
        _prefix("/modelhub.router.v1.RouterService/", "router", "30s"),
        # Registry: reads are idempotent and retried; writes and uploads are not. Watch and
        # Download stream for as long as the client wants (no timeout).
        _regex(f"^/{registry}/(Watch|DownloadModelVersion)$", "registry", "0s"),
        _regex(
            f"^/{registry}/(Get|List|Resolve).*",
            "registry",
            "30s",
            retry_policy={"retry_on": "unavailable,reset,connect-failure", "num_retries": 2},
        ),
        _prefix("/modelhub.registry.v1.RegistryService/", "registry", "0s"),
        _regex(f"^/{monitor}/(WatchAlerts|IngestEvents)$", "monitor", "0s"),
        _prefix(
            "/modelhub.monitor.v1.MonitorService/",
            "monitor",
            "30s",
            retry_policy={"retry_on": "unavailable,connect-failure", "num_retries": 1},
        ),
        _prefix("/modelhub.inference.v1.ModelRepositoryService/", DEFAULT_CLUSTER, "120s"),
        # Reflection and health answer for the suite as a whole (the router lists every
        # ModelHub service in its reflection when it runs behind this proxy).
        _prefix("/grpc.reflection.", "router", "0s"),
        _prefix("/grpc.health.v1.Health/", "router", "5s"),
    ]


# ---------------------------------------------------------------------------- console

# The web console (deploy/envoy/console/, docs/console.md): a handful of static files that
# Envoy answers itself from its route configuration (`direct_response` from files), so the
# console needs no second web server and loads while a backend is down. The list is fixed:
# the router may not see Envoy's filesystem (compose, Kubernetes), and a route naming a file
# Envoy lacks makes Envoy refuse every route. tests/unit/router/test_console_routes.py keeps
# it equal to the folder's contents.
CONSOLE_PATH = "/console"
CONSOLE_ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    **{
        f"{module}.js": "text/javascript; charset=utf-8"
        for module in (
            "app",
            "ui",
            "api",
            "bucketing",
            "sha256",
            "charts",
            "models",
            "routing",
            "observe",
        )
    },
}
OPENAPI_NAME = "openapi.json"
OPENAPI_PATH = f"/{OPENAPI_NAME}"
# Envoy's default cap on a direct response body is 4 KiB; the OpenAPI document is ~250 KiB.
MAX_DIRECT_RESPONSE_BYTES = 4 << 20
# Same-origin only: no inline script or style, no framing, calls only to this origin.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Route-level: the JSON transcoder answers 404 for any path it does not map
# (`reject_unknown_method`), so it stands aside on the console's routes.
_NO_TRANSCODER = {
    "envoy.filters.http.grpc_json_transcoder": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": True,
    }
}


def console_paths(console_dir: str) -> tuple[str, str]:
    """XdsOptions' `console_dir` and `openapi_file` for a console folder: openapi.json lies
    in its parent (deploy/envoy/ in a checkout, /etc/envoy/ in the Envoy image). Empty:
    neither."""
    if not console_dir:
        return "", ""
    folder = PurePosixPath(console_dir)
    return str(folder), str(folder.parent / OPENAPI_NAME)


def _file_route(path: str, filename: str, content_type: str) -> dict[str, Any]:
    headers = {
        "content-type": content_type,
        # No content hashes in the names: revalidate on every load, so an upgrade shows at once.
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }
    if content_type.startswith("text/html"):
        headers["content-security-policy"] = CONSOLE_CSP
    return {
        "name": f"console:{path}",
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"filename": filename}},
        "response_headers_to_add": [
            {
                "header": {"key": key, "value": value},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
            for key, value in headers.items()
        ],
        "typed_per_filter_config": _NO_TRANSCODER,
    }


def console_routes(options: XdsOptions) -> list[dict[str, Any]]:
    """The console's files (`/console/`, `/console/<file>`), `/console` → `/console/`, and
    the OpenAPI document at `/openapi.json`; nothing when neither is configured."""
    routes: list[dict[str, Any]] = []
    if options.console_dir:
        folder = options.console_dir.rstrip("/")
        routes.append(
            {
                "name": "console:redirect",
                "match": {"path": CONSOLE_PATH},
                "redirect": {"path_redirect": f"{CONSOLE_PATH}/"},
                "typed_per_filter_config": _NO_TRANSCODER,
            }
        )
        routes.append(
            _file_route(f"{CONSOLE_PATH}/", f"{folder}/index.html", CONSOLE_ASSETS["index.html"])
        )
        routes += [
            _file_route(f"{CONSOLE_PATH}/{name}", f"{folder}/{name}", content_type)
            for name, content_type in CONSOLE_ASSETS.items()
        ]
        routes.append(
            {
                "name": "console:not-found",
                "match": {"prefix": f"{CONSOLE_PATH}/"},
                "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
                "typed_per_filter_config": _NO_TRANSCODER,
            }
        )
    if options.openapi_file:
        routes.append(
            _file_route(OPENAPI_PATH, options.openapi_file, "application/json; charset=utf-8")
        )
    return routes


def preflight_route() -> dict[str, Any]:
    """CORS preflights of the JSON APIs (`OPTIONS /v1/...`, `/v2/...`): the transcoder maps
    no OPTIONS call, so no route matched them and the CORS filter, which answers a
    preflight only on a route that forwards, let them through to a 404 (gRPC-Web's
    preflights match the services' routes). The CORS filter answers on this route; the
    cluster is never reached by a preflight it answers."""
    return {
        "name": "cors-preflight",
        "match": {
            "safe_regex": {"regex": "^/v[12]/.*"},
            "headers": [{"name": ":method", "string_match": {"exact": "OPTIONS"}}],
        },
        "route": {"cluster": "router", "timeout": "5s"},
        "typed_per_filter_config": _NO_TRANSCODER,
    }


CORS = {
    "envoy.filters.http.cors": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"safe_regex": {"regex": ".*"}}],
        "allow_methods": "GET, POST, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-grpc-web, x-user-id, grpc-timeout, "
        f"traceparent, tracestate, {HEADER_MODEL}",
        "expose_headers": "grpc-status, grpc-message, x-request-id",
        "max_age": "86400",
    }
}


def route_configuration(table: RoutingTable, options: XdsOptions) -> dict[str, Any]:
    # Triton's deployment-wide extensions first: a client's x-modelhub-model header must
    # not send them to one endpoint variant.
    methods = "|".join(OIP_DEPLOYMENT_METHODS)
    routes = [_regex(f"^{re.escape(OIP_PREFIX)}({methods})$", "router", "120s")]
    for key in sorted(table.endpoints):
        routes.extend(endpoint_routes(table.endpoints[key], options))
    return {
        "name": ROUTE_CONFIG,
        "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BYTES,
        "virtual_hosts": [
            {
                "name": "modelhub",
                "domains": ["*"],
                "include_request_attempt_count": True,
                "typed_per_filter_config": CORS,
                "routes": routes + service_routes(options) + console_routes(options),
            }
        ],
    }


# ---------------------------------------------------------------------------- snapshot


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Envoy's dynamic configuration for one routing table."""

    revision: int
    clusters: list[dict[str, Any]]
    routes: dict[str, Any]

    def cluster_names(self) -> set[str]:
        return {c["name"] for c in self.clusters}


def snapshot(table: RoutingTable, options: XdsOptions) -> Snapshot:
    return Snapshot(table.revision, clusters(table, options), route_configuration(table, options))


def _resources(type_url: str, resources: Iterable[dict[str, Any]]) -> str:
    """The `resources:` block of a file: what a write compares with the last one."""
    typed = {"resources": [{"@type": type_url, **r} for r in resources]}
    return yaml.safe_dump(typed, sort_keys=False, width=100)


def _document(version: str, resources: str) -> str:
    header = "# Written by the ModelHub router (modelhub.router.xds); Envoy watches this file.\n"
    return f"{header}version_info: '{version}'\n{resources}"


def _write_atomically(path: Path, text: str, *, replace: bool = True) -> tuple[int, int] | None:
    """temp file in the same directory → fsync → rename over `path` (Envoy's directory
    watch fires on the move, and never sees a half-written file). With `replace=False` an
    existing `path` is left alone (a hard link cannot clobber) and None is returned.
    Returns the written file's identity (inode, mtime), to notice a later overwrite."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # Envoy may run as another user than the router
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return None
            finally:
                os.unlink(tmp)
        return _identity(path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


@dataclass
class ConfigWriter:
    """Writes snapshots into the directory Envoy watches.

    Order: the clusters file first, holding the new clusters *and* the ones the current
    routes still name; after `warm_s` (Envoy warms a new cluster before it serves) the
    routes file; clusters no route names any more are dropped with the next write or by
    `prune()`. Unchanged files are not rewritten.
    """

    directory: Path
    warm_s: float = 0.5
    writes: int = 0
    errors: int = 0
    _clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    _routes_text: str = ""
    _clusters_text: str = ""
    _serial: int = 0
    _clusters_file: tuple[int, int] | None = None
    _routes_file: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        # A restarted router starts from what Envoy has: the routes on disk may still name
        # clusters that the first new snapshot drops, so they stay until routes change.
        try:
            document = yaml.safe_load(self.clusters_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            document = {}
        for resource in document.get("resources") or []:
            if isinstance(resource, dict) and "name" in resource:
                cluster = {k: v for k, v in resource.items() if k != "@type"}
                self._clusters[str(cluster["name"])] = cluster

    @property
    def clusters_path(self) -> Path:
        return self.directory / CLUSTERS_FILE

    @property
    def routes_path(self) -> Path:
        return self.directory / ROUTES_FILE

    def _version(self, revision: int) -> str:
        self._serial += 1
        return f"{revision}.{self._serial}.{int(time.time())}"

    def _write_clusters(self, revision: int, clusters: dict[str, dict[str, Any]]) -> bool:
        body = [clusters[k] for k in sorted(clusters)]
        text = _resources(_CLUSTER_TYPE, body)
        # Unchanged, and the file on disk is still the one written here (not replaced by
        # someone else, e.g. a seeding step racing a starting router): nothing to do.
        if text == self._clusters_text and _identity(self.clusters_path) == self._clusters_file:
            return False
        self._clusters_file = _write_atomically(
            self.clusters_path, _document(self._version(revision), text)
        )
        self._clusters_text = text
        self._clusters = dict(clusters)
        return True

    def seed(self, snap: Snapshot) -> list[Path]:
        """Write `snap`'s files where none exist yet, never replacing one (a router may be
        writing into the directory at the same time): what Envoy starts with. Returns the
        files written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        written = []
        clusters = _document(self._version(snap.revision), _resources(_CLUSTER_TYPE, snap.clusters))
        if _write_atomically(self.clusters_path, clusters, replace=False) is not None:
            written.append(self.clusters_path)
        routes = _document(self._version(snap.revision), _resources(_ROUTE_TYPE, [snap.routes]))
        if _write_atomically(self.routes_path, routes, replace=False) is not None:
            written.append(self.routes_path)
        return written

    def write(self, snap: Snapshot, sleep: Any = time.sleep) -> bool:
        """Write `snap` (blocking: run it in a thread). True when anything changed."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            new = {c["name"]: c for c in snap.clusters}
            # Keep the clusters the routes on disk still name until those routes are gone.
            merged = {**self._clusters, **new}
            changed = self._write_clusters(snap.revision, merged)
            routes_text = _resources(_ROUTE_TYPE, [snap.routes])
            on_disk = _identity(self.routes_path)
            if routes_text != self._routes_text or on_disk != self._routes_file:
                if changed and self.warm_s > 0:
                    sleep(self.warm_s)
                self._routes_file = _write_atomically(
                    self.routes_path,
                    _document(self._version(snap.revision), routes_text),
                )
                self._routes_text = routes_text
                changed = True
            if set(merged) != set(new):
                # Routes no longer name these: drop them (after Envoy took the routes).
                if self.warm_s > 0:
                    sleep(self.warm_s)
                self._write_clusters(snap.revision, new)
            if changed:
                self.writes += 1
            return changed
        except OSError:
            self.errors += 1
            log.exception("could not write Envoy's configuration into %s", self.directory)
            return False
