"""Renders Envoy's bootstrap from the one template in deploy/envoy/envoy.yaml.tmpl.

Three variants come from it — local processes on 127.0.0.1 (`make up`, the e2e tests), the
docker-compose network and Kubernetes — differing only in addresses, ports, the xDS
directory and the tracing collector, so they cannot drift apart:

    python -m modelhub.router.envoy render --variant compose > deploy/compose/envoy/envoy.yaml
    python -m modelhub.router.envoy validate --variant local
    python -m modelhub.router.envoy seed --variant local   # initial routes before the router runs

TLS is off in the committed configurations and turned on at render time (docs/security.md):
`--tls-cert/--tls-key` terminate TLS on the front door (`--tls-client-ca` also requires
client certificates), `--upstream-tls-ca/-cert/-key` make Envoy talk mutual TLS to the
services (the same files as their MODELHUB_TLS_* settings).

The routes and most clusters are not in the bootstrap: the router writes them
(`modelhub.router.xds`) into the xDS directory, which `seed` fills with the configuration
Envoy starts with (plain model names and the services; no endpoint yet).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from modelhub.common import routing_headers
from modelhub.common.limits import DEFAULT_MAX_REQUEST_BYTES, REQUEST_ENVELOPE_BYTES
from modelhub.router import xds
from modelhub.router.settings import split_address
from modelhub.router.table import MAX_SHADOWS, empty_table

_MARKER = Path("deploy") / "envoy" / "envoy.yaml.tmpl"


def checkout_root() -> Path:
    """The source checkout whose deploy/envoy/ holds the bootstrap template and the
    filters: $MODELHUB_CHECKOUT, else the nearest folder holding them above the working
    directory or above this module (an editable install). An installed wheel carries no
    template: `seed` works anywhere, `render` and `validate` need a checkout."""
    configured = os.environ.get("MODELHUB_CHECKOUT")
    if configured:
        return Path(configured).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / _MARKER).is_file():
                return folder
    return Path.cwd()


ROOT = checkout_root()
TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml.tmpl"
LUA_REST_ERRORS = ROOT / "deploy" / "envoy" / "rest_errors.lua"
# The routing filter, an Envoy dynamic module: its source, and where `make proto` builds it
# (the Envoy image builds it into /etc/envoy/).
ROUTE_FILTER_SOURCE = ROOT / "deploy" / "envoy" / "route_filter" / "modelhub_route.c"
ROUTE_MODULE = ROOT / "build" / "envoy" / "libmodelhub_route.so"
DESCRIPTOR = ROOT / "deploy" / "envoy" / "modelhub.pb"
# The web console (and openapi.json beside it): served by Envoy from these files.
CONSOLE_DIR = ROOT / "deploy" / "envoy" / "console"
COMPOSE_CONFIG = ROOT / "deploy" / "compose" / "envoy" / "envoy.yaml"

TRACING = """\
tracing:
  random_sampling: {value: 100}
  provider:
    name: envoy.tracers.opentelemetry
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
      service_name: modelhub-envoy
      grpc_service:
        envoy_grpc: {cluster_name: otel_collector}
        timeout: 1s"""

TRACING_CLUSTER = """\
- name: otel_collector
  type: STRICT_DNS
  dns_lookup_family: V4_ONLY
  connect_timeout: 1s
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config:
        http2_protocol_options: {}
  load_assignment:
    cluster_name: otel_collector
    endpoints:
    - lb_endpoints:
      - endpoint:
          address:
            socket_address: {address: $host, port_value: $port}"""


# The most one request may make Envoy hold: the largest message an inference server with
# default settings accepts (its tensor limit plus the envelope), and headroom for the gRPC
# frame and for REST's JSON around binary tensors. Envoy refuses larger bodies before
# holding them (the routing filter's module, deploy/envoy/route_filter/modelhub_route.c; the
# listener's buffer limits).
MAX_REQUEST_BYTES = DEFAULT_MAX_REQUEST_BYTES + REQUEST_ENVELOPE_BYTES + (64 << 10)


@dataclass(frozen=True)
class EnvoyParams:
    variant: str = "local"
    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    # The admin interface: loopback only (it can stop Envoy and change its state).
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    # The `ops` listener: GET /ready and /stats/prometheus only (probes, scrapes).
    ops_address: str = "127.0.0.1"
    ops_port: int = 9902
    descriptor: str = str(DESCRIPTOR)
    # The directory the router writes Envoy's routes and clusters into (filesystem xDS).
    xds_dir: str = str(ROOT / "var" / "envoy-xds")
    # The web console's files as Envoy sees them (its parent holds openapi.json); the seed
    # routes /console/ and /openapi.json to them, as the router does with
    # MODELHUB_ROUTER_CONSOLE_DIR set to the same folder. Empty: no console (outside a
    # checkout, or before `make proto` wrote openapi.json: Envoy refuses routes naming
    # files it lacks).
    console_dir: str = (
        str(CONSOLE_DIR)
        if (CONSOLE_DIR / "index.html").is_file()
        and (CONSOLE_DIR.parent / xds.OPENAPI_NAME).is_file()
        else ""
    )
    router: list[str] = field(default_factory=lambda: ["127.0.0.1:50053"])
    registry: list[str] = field(default_factory=lambda: ["127.0.0.1:50051"])
    monitor: list[str] = field(default_factory=lambda: ["127.0.0.1:50054"])
    inference: list[str] = field(default_factory=lambda: ["127.0.0.1:50052"])
    # host:port of an OTLP/gRPC collector; empty: Envoy does not trace.
    otlp_collector: str = ""
    rate_limit_per_second: int = 10_000
    rate_limit_burst: int = 20_000
    # Access log: "all" requests, "errors" (every control-plane call, and inference calls
    # that failed: successful ones are in the monitor, one event each, with their request
    # id), or "none".
    access_log: str = "errors"
    # The most bytes one request body may have (see MAX_REQUEST_BYTES).
    max_request_bytes: int = MAX_REQUEST_BYTES
    # The routing filter's shared object as Envoy sees it (`make proto` builds it).
    route_module: str = str(ROUTE_MODULE)
    # TLS on the front door: PEM certificate (chain) and key; empty: plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # With it, clients must present a certificate this CA signed (mutual TLS at the door).
    tls_client_ca_file: str = ""
    # Mutual TLS from Envoy to the services (their MODELHUB_TLS_* files); None: plaintext.
    upstream_tls: xds.UpstreamTls | None = None


LOCAL = EnvoyParams()
COMPOSE = EnvoyParams(
    variant="compose",
    listen_address="0.0.0.0",
    ops_address="0.0.0.0",
    descriptor="/etc/envoy/modelhub.pb",
    route_module="/etc/envoy/libmodelhub_route.so",
    xds_dir="/var/run/modelhub/xds",
    console_dir="/etc/envoy/console",
    router=["router:50053"],
    registry=["registry:50051"],
    monitor=["monitor:50054"],
    inference=["inference:50052"],
    otlp_collector="otel-collector:4317",
)
KUBERNETES = replace(
    COMPOSE,
    variant="k8s",
    router=["127.0.0.1:50053"],  # the router runs as a sidecar in each Envoy pod
    registry=["registry:50051"],
    monitor=["monitor:50054"],
    inference=["inference-headless:50052"],
    otlp_collector="",
)
VARIANTS = {"local": LOCAL, "compose": COMPOSE, "k8s": KUBERNETES}


# Request headers only Envoy sets (docs/data-plane.md): a client's copies are removed
# before the routing filter runs. `x-modelhub-model` (and `x-modelhub-version` with it) stay:
# a client may name the model in the header.
INTERNAL_HEADERS = (
    routing_headers.HEADER_ENDPOINT,
    routing_headers.HEADER_VARIANT,
    routing_headers.HEADER_TARGET,
    routing_headers.HEADER_FALLBACK,
    routing_headers.HEADER_SHADOW,
    routing_headers.HEADER_MIRRORED,
    routing_headers.HEADER_BUCKET,
    routing_headers.HEADER_KEY_HASH,
    routing_headers.HEADER_ROUTE,
    *(f"{routing_headers.HEADER_MIRROR_PREFIX}{i}" for i in range(MAX_SHADOWS)),
)


# Inference calls (gRPC, and REST after the transcoder): logged only when they fail (a
# regex in a string matcher must match the whole path).
_INFERENCE_PATHS = f"({re.escape(xds.OIP_PREFIX)}|{re.escape(xds.REST_PREFIX)}).*"


def access_log_filter(mode: str) -> str:
    """The access log's `filter` block for `mode` (see `EnvoyParams.access_log`)."""
    if mode == "all":
        return ""
    if mode == "none":
        # A filter nothing passes: no line is written.
        return _yaml_block({"filter": {"status_code_filter": {"comparison": {
            "op": "LE", "value": {"default_value": 0, "runtime_key": "modelhub.access_log.none"}
        }}}})  # fmt: skip
    if mode != "errors":
        raise ValueError(f"access_log must be all, errors or none, got {mode!r}")
    not_inference = {
        "header_filter": {
            "header": {
                "name": ":path",
                "string_match": {"safe_regex": {"regex": _INFERENCE_PATHS}},
                "invert_match": True,
            }
        }
    }
    failed_http = {"status_code_filter": {"comparison": {
        "op": "GE", "value": {"default_value": 400, "runtime_key": "modelhub.access_log.status"}
    }}}  # fmt: skip
    failed_grpc = {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}}
    return _yaml_block(
        {"filter": {"or_filter": {"filters": [not_inference, failed_http, failed_grpc]}}}
    )


def _yaml_block(value: object) -> str:
    return yaml.safe_dump(value, sort_keys=False, width=100).rstrip("\n")


def _flow_scalar(text: str) -> str:
    """`text` as a scalar in a YAML flow mapping: an IPv6 address (`::1`) quoted, as YAML
    would not read it bare."""
    return json.dumps(text) if ":" in text else text


def static_clusters(params: EnvoyParams) -> list[dict[str, object]]:
    """Control-plane clusters and the default inference pool (the router's dynamic clusters
    are built by the same function, `xds.grpc_cluster`)."""
    tls = params.upstream_tls
    return [
        xds.grpc_cluster("router", params.router, tls=tls),
        xds.grpc_cluster("registry", params.registry, tls=tls),
        xds.grpc_cluster("monitor", params.monitor, tls=tls),
        xds.grpc_cluster(xds.DEFAULT_CLUSTER, params.inference, tls=tls),
    ]


def ingress_tls(params: EnvoyParams) -> dict[str, object]:
    """The front door's `transport_socket` (empty without a certificate): TLS with ALPN h2
    and http/1.1, so that gRPC and REST both work over it."""
    if not (params.tls_cert_file or params.tls_key_file or params.tls_client_ca_file):
        return {}
    if not (params.tls_cert_file and params.tls_key_file):
        raise ValueError("TLS on the front door needs both a certificate and a key file")
    common: dict[str, object] = {
        "alpn_protocols": ["h2", "http/1.1"],
        "tls_certificates": [
            {
                "certificate_chain": {"filename": params.tls_cert_file},
                "private_key": {"filename": params.tls_key_file},
            }
        ],
    }
    context: dict[str, object] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
        "DownstreamTlsContext",
        "common_tls_context": common,
    }
    if params.tls_client_ca_file:
        context["require_client_certificate"] = True
        common["validation_context"] = {"trusted_ca": {"filename": params.tls_client_ca_file}}
    return {"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": context}}


def local_reply_mappers(params: EnvoyParams) -> list[dict[str, object]]:
    """Envoy's 413 (a body past the listener's buffer limits) as a clear answer: gRPC
    RESOURCE_EXHAUSTED with the limit in grpc-message, anything else {"error": "…"}."""
    message = (
        f"the request body is larger than the front door's limit of {params.max_request_bytes} "
        "bytes (the inference request limit and its envelope): send fewer rows per request"
    )

    def too_large() -> dict[str, object]:  # a new dict each time: no YAML alias
        return {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {
                        "default_value": 413,
                        "runtime_key": "modelhub.local_reply.too_large",
                    },
                }
            }
        }

    grpc = {
        "header_filter": {
            "header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
        }
    }
    return [
        {
            "filter": {"and_filter": {"filters": [too_large(), grpc]}},
            "headers_to_add": [
                {
                    "header": {"key": "grpc-status", "value": "8"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "body": {"inline_string": message},
        },
        {
            "filter": too_large(),
            "body": {"inline_string": json.dumps({"error": message})},
            "body_format_override": {
                "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                "content_type": "application/json",
            },
        },
    ]


def render(params: EnvoyParams, template: str | None = None) -> str:
    """The Envoy bootstrap YAML for `params`."""
    if template is None and not TEMPLATE.is_file():
        raise FileNotFoundError(
            f"the Envoy bootstrap template {TEMPLATE} is missing: render from a ModelHub "
            "checkout (or set MODELHUB_CHECKOUT to one); an installed package can only seed"
        )
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    tracing = ""
    tracing_cluster = ""
    if params.otlp_collector:
        host, port = split_address(params.otlp_collector)
        tracing = TRACING
        tracing_cluster = string.Template(TRACING_CLUSTER).substitute(
            host=_flow_scalar(host), port=port
        )
    if params.admin_address not in ("127.0.0.1", "::1"):
        raise ValueError(
            f"Envoy's admin interface must listen on loopback, not {params.admin_address}: "
            "probes and scrapes use the ops listener"
        )
    tls = ingress_tls(params)
    blocks = {
        "STATIC_CLUSTERS": _yaml_block(static_clusters(params)),
        "LUA_REST_ERRORS": LUA_REST_ERRORS.read_text(encoding="utf-8").rstrip("\n"),
        "INGRESS_TLS": _yaml_block(tls) if tls else "",
        "LOCAL_REPLY_MAPPERS": _yaml_block(local_reply_mappers(params)),
        "STRIP_HEADERS": _yaml_block([{"remove": header} for header in INTERNAL_HEADERS]),
        "ACCESS_LOG_FILTER": access_log_filter(params.access_log),
        "TRACING": tracing,
        "TRACING_CLUSTER": tracing_cluster,
    }
    # Block placeholders stand alone on their line; the block takes the line's indentation.
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("${") and stripped.endswith("}") and stripped[2:-1] in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            block = blocks[stripped[2:-1]]
            lines += [indent + part if part else part for part in block.splitlines()]
            continue
        lines.append(line)
    scalars = {
        "LISTEN_ADDRESS": _flow_scalar(params.listen_address),
        "LISTEN_PORT": str(params.listen_port),
        "ADMIN_ADDRESS": _flow_scalar(params.admin_address),
        "ADMIN_PORT": str(params.admin_port),
        "OPS_ADDRESS": _flow_scalar(params.ops_address),
        "OPS_PORT": str(params.ops_port),
        "MAX_REQUEST_BYTES": str(params.max_request_bytes),
        "ROUTE_MODULE": params.route_module,
        "DESCRIPTOR": params.descriptor,
        "XDS_DIR": params.xds_dir,
        "RATE_LIMIT_PER_SECOND": str(params.rate_limit_per_second),
        "RATE_LIMIT_BURST": str(params.rate_limit_burst),
    }
    header = (
        f"# Rendered ({params.variant} variant) from deploy/envoy/envoy.yaml.tmpl by\n"
        f"# `python -m modelhub.router.envoy render --variant {params.variant}`.\n"
        "# Do not edit: change the template (a test fails when a rendered copy drifts from it).\n"
    )
    # `$$` in the Lua source would be unescaped by the template: rest_errors.lua has none.
    return header + string.Template("\n".join(lines) + "\n").safe_substitute(scalars)


def seed(params: EnvoyParams, directory: Path | None = None) -> Path:
    """Write the configuration Envoy starts with before the router wrote any (no endpoints:
    plain model names and the services route). A file already there is never replaced: a
    router writing into the directory at the same time wins."""
    target = Path(directory or params.xds_dir)
    console_dir, openapi_file = xds.console_paths(params.console_dir)
    options = xds.XdsOptions(
        default_pool=tuple(params.inference),
        upstream_tls=params.upstream_tls,
        console_dir=console_dir,
        openapi_file=openapi_file,
    )
    xds.ConfigWriter(target, warm_s=0).seed(xds.snapshot(empty_table(), options))
    return target


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    return found


def validate(config_path: Path) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` on a rendered config."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.router.envoy", description=__doc__)
    parser.add_argument(
        "action",
        choices=["render", "validate", "seed"],
        help="render the bootstrap; validate it with `envoy --mode validate`; seed the xDS "
        "directory with the configuration Envoy starts with before the router writes one",
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="local")
    parser.add_argument("--out", help="write here instead of stdout (render)")
    parser.add_argument("--descriptor", help="descriptor set path override")
    parser.add_argument("--xds-dir", help="xDS directory override (render, seed)")
    parser.add_argument("--tls-cert", default="", help="front door TLS: PEM certificate file")
    parser.add_argument("--tls-key", default="", help="front door TLS: PEM private key file")
    parser.add_argument(
        "--tls-client-ca", default="", help="front door TLS: require client certificates it signed"
    )
    parser.add_argument("--upstream-tls-ca", default="", help="mutual TLS to the services: CA")
    parser.add_argument(
        "--upstream-tls-cert", default="", help="mutual TLS to the services: Envoy's certificate"
    )
    parser.add_argument(
        "--upstream-tls-key", default="", help="mutual TLS to the services: Envoy's key"
    )
    parser.add_argument(
        "--upstream-tls-server-name",
        default="",
        help="mutual TLS to the services: SNI and the name their certificates must carry",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=0,
        help=f"largest request body the front door takes (default {MAX_REQUEST_BYTES})",
    )
    args = parser.parse_args(argv)
    params = VARIANTS[args.variant]
    params = replace(
        params,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        tls_client_ca_file=args.tls_client_ca,
        max_request_bytes=args.max_request_bytes or params.max_request_bytes,
    )
    upstream = (args.upstream_tls_ca, args.upstream_tls_cert, args.upstream_tls_key)
    if any(upstream):
        if not all(upstream):
            parser.error(
                "--upstream-tls-ca, --upstream-tls-cert and --upstream-tls-key go together"
            )
        params = replace(
            params, upstream_tls=xds.UpstreamTls(*upstream, args.upstream_tls_server_name)
        )
    if args.descriptor:
        params = replace(params, descriptor=args.descriptor)
    if args.xds_dir:
        params = replace(params, xds_dir=args.xds_dir)
    if args.action == "seed":
        sys.stdout.write(f"{seed(params)}\n")
        return 0
    if args.action == "render":
        text = render(params)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    if args.variant != "local" and not args.descriptor:
        # The container paths exist only inside the container: validate against ours.
        params = replace(params, descriptor=str(DESCRIPTOR))
    if args.variant != "local":
        params = replace(params, console_dir=str(CONSOLE_DIR), route_module=str(ROUTE_MODULE))
    if args.variant != "local" and not args.xds_dir:
        params = replace(params, xds_dir=str(ROOT / "build" / f"xds-{args.variant}"))
    seed(params)
    out = ROOT / "build" / f"envoy-{args.variant}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(params), encoding="utf-8")
    result = validate(out)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
