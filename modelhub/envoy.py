"""Renders Envoy's configuration from the one template in deploy/envoy/envoy.yaml.tmpl.

Two variants come from it — local processes on 127.0.0.1 (`make up`, the e2e tests) and the
docker-compose network — differing only in addresses, ports and the tracing collector, so
they cannot drift apart:

    python -m modelhub.envoy render --variant compose > deploy/compose/envoy/envoy.yaml
    python -m modelhub.envoy validate --variant local
"""

from __future__ import annotations

import argparse
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR = ROOT / "deploy" / "envoy" / "modelhub.pb"
COMPOSE_CONFIG = ROOT / "deploy" / "compose" / "envoy" / "envoy.yaml"

GRPC_CLUSTER = """\
type: STRICT_DNS
dns_lookup_family: V4_ONLY
connect_timeout: 1s
lb_policy: LEAST_REQUEST
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config:
      http2_protocol_options:
        max_concurrent_streams: 1024
health_checks:
- timeout: 1s
  interval: 1s
  no_traffic_interval: 2s
  unhealthy_threshold: 2
  healthy_threshold: 1
  grpc_health_check: {}
outlier_detection:
  consecutive_5xx: 3
  consecutive_gateway_failure: 2
  consecutive_local_origin_failure: 2
  split_external_local_origin_errors: true
  interval: 1s
  base_ejection_time: 5s
  max_ejection_percent: 100"""

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


def _endpoints(addresses: list[str]) -> str:
    lines = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        lines += [
            "- endpoint:",
            "    address:",
            f"      socket_address: {{address: {host}, port_value: {int(port)}}}",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class EnvoyParams:
    variant: str = "local"
    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    inference_lb_port: int = 8081
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    descriptor: str = str(DESCRIPTOR)
    router: list[str] = field(default_factory=lambda: ["127.0.0.1:50053"])
    registry: list[str] = field(default_factory=lambda: ["127.0.0.1:50051"])
    monitor: list[str] = field(default_factory=lambda: ["127.0.0.1:50054"])
    inference: list[str] = field(default_factory=lambda: ["127.0.0.1:50052"])
    # host:port of an OTLP/gRPC collector; empty: Envoy does not trace.
    otlp_collector: str = ""
    rate_limit_per_second: int = 10_000
    rate_limit_burst: int = 20_000


LOCAL = EnvoyParams()
COMPOSE = EnvoyParams(
    variant="compose",
    listen_address="0.0.0.0",
    admin_address="0.0.0.0",
    descriptor="/etc/envoy/modelhub.pb",
    router=["router:50053"],
    registry=["registry:50051"],
    monitor=["monitor:50054"],
    inference=["inference:50052"],
    otlp_collector="otel-collector:4317",
)
VARIANTS = {"local": LOCAL, "compose": COMPOSE}


def render(params: EnvoyParams, template: str | None = None) -> str:
    """The Envoy YAML for `params`."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    tracing = ""
    tracing_cluster = ""
    if params.otlp_collector:
        host, _, port = params.otlp_collector.rpartition(":")
        tracing = TRACING
        tracing_cluster = string.Template(TRACING_CLUSTER).substitute(host=host, port=int(port))
    blocks = {
        "GRPC_CLUSTER": GRPC_CLUSTER,
        "ROUTER_ENDPOINTS": _endpoints(params.router),
        "REGISTRY_ENDPOINTS": _endpoints(params.registry),
        "MONITOR_ENDPOINTS": _endpoints(params.monitor),
        "INFERENCE_ENDPOINTS": _endpoints(params.inference),
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
        "INFERENCE_LB_PORT": str(params.inference_lb_port),
        "ADMIN_ADDRESS": params.admin_address,
        "ADMIN_PORT": str(params.admin_port),
        "DESCRIPTOR": params.descriptor,
        "RATE_LIMIT_PER_SECOND": str(params.rate_limit_per_second),
        "RATE_LIMIT_BURST": str(params.rate_limit_burst),
    }
    header = (
        f"# Rendered ({params.variant} variant) from deploy/envoy/envoy.yaml.tmpl by\n"
        f"# `python -m modelhub.envoy render --variant {params.variant}`. Do not edit: change the\n"
        "# template (a test fails when a rendered copy drifts from it).\n"
    )
    return header + string.Template("\n".join(lines) + "\n").substitute(scalars)


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
    parser.add_argument("action", choices=["render", "validate"])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="local")
    parser.add_argument("--out", help="write here instead of stdout (render)")
    parser.add_argument("--descriptor", help="descriptor set path override")
    args = parser.parse_args(argv)
    params = VARIANTS[args.variant]
    if args.descriptor:
        params = replace(params, descriptor=args.descriptor)
    if args.action == "render":
        text = render(params)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    if args.variant == "compose" and not args.descriptor:
        # The compose path exists only inside the container: validate against ours.
        params = replace(params, descriptor=str(DESCRIPTOR))
    out = ROOT / "build" / f"envoy-{args.variant}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(params), encoding="utf-8")
    result = validate(out)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
