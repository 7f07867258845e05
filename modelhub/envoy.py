"""Renders Envoy's bootstrap from the one template in deploy/envoy/envoy.yaml.tmpl.

Three variants come from it — local processes on 127.0.0.1 (`make up`, the e2e tests), the
docker-compose network and Kubernetes — differing only in addresses, ports, the xDS
directory and the tracing collector, so they cannot drift apart:

    python -m modelhub.envoy render --variant compose > deploy/compose/envoy/envoy.yaml
    python -m modelhub.envoy validate --variant local
    python -m modelhub.envoy seed --variant local   # initial routes before the router runs

The routes and most clusters are not in the bootstrap: the router writes them
(`modelhub.router.xds`) into the xDS directory, which `seed` fills with the configuration
Envoy starts with (plain model names and the services; no endpoint yet).
"""

from __future__ import annotations

import argparse
import re
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from modelhub.router import xds
from modelhub.router.table import MAX_SHADOWS, empty_table

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml.tmpl"
LUA = ROOT / "deploy" / "envoy" / "modelhub.lua"
LUA_REST_ERRORS = ROOT / "deploy" / "envoy" / "rest_errors.lua"
DESCRIPTOR = ROOT / "deploy" / "envoy" / "modelhub.pb"
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


@dataclass(frozen=True)
class EnvoyParams:
    variant: str = "local"
    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    descriptor: str = str(DESCRIPTOR)
    # The directory the router writes Envoy's routes and clusters into (filesystem xDS).
    xds_dir: str = str(ROOT / "var" / "envoy-xds")
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


LOCAL = EnvoyParams()
COMPOSE = EnvoyParams(
    variant="compose",
    listen_address="0.0.0.0",
    admin_address="0.0.0.0",
    descriptor="/etc/envoy/modelhub.pb",
    xds_dir="/var/run/modelhub/xds",
    router=["router:50053"],
    registry=["registry:50051"],
    monitor=["monitor:50054"],
    inference=["inference:50052"],
    otlp_collector="otel-collector:4317",
)
KUBERNETES = replace(
    COMPOSE,
    variant="k8s",
    admin_address="0.0.0.0",
    router=["127.0.0.1:50053"],  # the router runs as a sidecar in each Envoy pod
    registry=["registry:50051"],
    monitor=["monitor:50054"],
    inference=["inference-headless:50052"],
    otlp_collector="",
)
VARIANTS = {"local": LOCAL, "compose": COMPOSE, "k8s": KUBERNETES}


# Request headers only Envoy sets (docs/data-plane.md): a client's copies are removed
# before the Lua filter runs. `x-modelhub-model` (and `x-modelhub-version` with it) stay:
# a client may name the model in the header.
INTERNAL_HEADERS = (
    xds.HEADER_ENDPOINT,
    xds.HEADER_VARIANT,
    xds.HEADER_TARGET,
    xds.HEADER_FALLBACK,
    xds.HEADER_SHADOW,
    xds.HEADER_MIRRORED,
    xds.HEADER_BUCKET,
    "x-modelhub-key-hash",
    "x-modelhub-route",
    *(f"x-modelhub-mirror-{i}" for i in range(MAX_SHADOWS)),
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


def static_clusters(params: EnvoyParams) -> list[dict[str, object]]:
    """Control-plane clusters and the default inference pool (the router's dynamic clusters
    are built by the same function, `xds.grpc_cluster`)."""
    return [
        xds.grpc_cluster("router", params.router),
        xds.grpc_cluster("registry", params.registry),
        xds.grpc_cluster("monitor", params.monitor),
        xds.grpc_cluster(xds.DEFAULT_CLUSTER, params.inference),
    ]


def render(params: EnvoyParams, template: str | None = None) -> str:
    """The Envoy bootstrap YAML for `params`."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    tracing = ""
    tracing_cluster = ""
    if params.otlp_collector:
        host, _, port = params.otlp_collector.rpartition(":")
        tracing = TRACING
        tracing_cluster = string.Template(TRACING_CLUSTER).substitute(host=host, port=int(port))
    blocks = {
        "STATIC_CLUSTERS": _yaml_block(static_clusters(params)),
        "LUA_SOURCE": LUA.read_text(encoding="utf-8").rstrip("\n"),
        "LUA_REST_ERRORS": LUA_REST_ERRORS.read_text(encoding="utf-8").rstrip("\n"),
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
        "LISTEN_ADDRESS": params.listen_address,
        "LISTEN_PORT": str(params.listen_port),
        "ADMIN_ADDRESS": params.admin_address,
        "ADMIN_PORT": str(params.admin_port),
        "DESCRIPTOR": params.descriptor,
        "XDS_DIR": params.xds_dir,
        "RATE_LIMIT_PER_SECOND": str(params.rate_limit_per_second),
        "RATE_LIMIT_BURST": str(params.rate_limit_burst),
    }
    header = (
        f"# Rendered ({params.variant} variant) from deploy/envoy/envoy.yaml.tmpl by\n"
        f"# `python -m modelhub.envoy render --variant {params.variant}`. Do not edit: change the\n"
        "# template (a test fails when a rendered copy drifts from it).\n"
    )
    # `$$` in the Lua source would be unescaped by the template: the source has none.
    return header + string.Template("\n".join(lines) + "\n").safe_substitute(scalars)


def seed(params: EnvoyParams, directory: Path | None = None) -> Path:
    """Write the configuration Envoy starts with before the router wrote any (no endpoints:
    plain model names and the services route). A file already there is never replaced: a
    router writing into the directory at the same time wins."""
    target = Path(directory or params.xds_dir)
    options = xds.XdsOptions(default_pool=tuple(params.inference))
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
    parser = argparse.ArgumentParser(prog="python -m modelhub.envoy", description=__doc__)
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
    args = parser.parse_args(argv)
    params = VARIANTS[args.variant]
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
