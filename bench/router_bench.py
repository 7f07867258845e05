"""Router overhead: the same load straight to inference and through the router, in one run.

Starts a registry, one inference server and a router as processes (all pinned with
taskset to the server CPUs), publishes the reference models `identity` and `mlp`
(bench/models.py) with an endpoint per model (one variant, 100%), and drives closed-loop
load with bench/loadgen.py (pinned to the client CPUs; it checks every answer) at
concurrency 1 and 64, straight to inference and through the router's endpoint. A last
pair of runs repeats mlp at concurrency 64 through the router with a shadow at 100% (the
same version, so the inference server computes every request twice) and measures the
shadow's share of the server CPU. Prints one table.

    python bench/router_bench.py                                  # defaults below
    python bench/router_bench.py --server-cpus 0,1 --client-cpus 2,3 --duration 10

Targets (issue 4): at concurrency 1 the router adds ≤ 0.5 ms p50; at concurrency 64 the
throughput through the router is ≥ 0.7 × direct with router and inference on the same two
cores; the shadow cuts primary throughput by no more than its own CPU share.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build  # noqa: E402
from modelhub.api.registry.v1 import registry_pb2 as rpb  # noqa: E402
from modelhub.api.registry.v1 import registry_pb2_grpc  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    address: str

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start(name: str, module: str, env: dict[str, str], cpus: str, tmp: Path) -> Service:
    ready = tmp / f"{name}.ready"
    prefix = f"MODELHUB_{module.upper()}_"
    full_env = {
        **os.environ,
        f"{prefix}PORT": "0",
        f"{prefix}METRICS_PORT": "-1",
        f"{prefix}READY_FILE": str(ready),
        "MODELHUB_LOG_LEVEL": "WARNING",
        **{f"{prefix}{k}": v for k, v in env.items()},
    }
    process = subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, "-m", f"modelhub.{module}"],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "ab"),  # noqa: SIM115
    )
    for _ in range(600):
        if ready.exists():
            port = json.loads(ready.read_text())["port"]
            return Service(name, process, f"127.0.0.1:{port}")
        if process.poll() is not None:
            raise SystemExit(f"{name} exited:\n{(tmp / f'{name}.log').read_text()}")
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start")


def stop(service: Service) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(15)
        except subprocess.TimeoutExpired:
            service.process.kill()


async def publish(registry: str, models: list[str]) -> None:
    """Each model as version 1, a deployment keeping it loaded, an endpoint `<m>-ep`
    routing 100% to it, and an endpoint `<m>-shadow` that also mirrors 100% to it."""
    async with grpc.aio.insecure_channel(registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for model in models:
            data = build(model).onnx_bytes

            async def chunks(model: str = model, data: bytes = data):  # type: ignore[no-untyped-def]
                yield rpb.UploadModelVersionRequest(
                    metadata=rpb.UploadMetadata(
                        parent=f"models/{model}",
                        create_model=True,
                        sha256=hashlib.sha256(data).hexdigest(),
                    )
                )
                for offset in range(0, len(data), 1 << 20):
                    yield rpb.UploadModelVersionRequest(chunk=data[offset : offset + (1 << 20)])

            await stub.UploadModelVersion(chunks())
            selector = rpb.VersionSelector(version=1)
            await stub.CreateDeployment(
                rpb.CreateDeploymentRequest(
                    deployment_id=model,
                    deployment=rpb.Deployment(model=f"models/{model}", versions=[selector]),
                )
            )
            variant = rpb.Variant(
                name="champion", model=f"models/{model}", selector=selector, weight=100
            )
            await stub.CreateEndpoint(
                rpb.CreateEndpointRequest(
                    endpoint_id=f"{model}-ep", endpoint=rpb.Endpoint(variants=[variant])
                )
            )
            await stub.CreateEndpoint(
                rpb.CreateEndpointRequest(
                    endpoint_id=f"{model}-shadow",
                    endpoint=rpb.Endpoint(
                        variants=[variant],
                        shadows=[
                            rpb.Shadow(
                                name="mirror",
                                model=f"models/{model}",
                                selector=selector,
                                sample_rate=1.0,
                            )
                        ],
                    ),
                )
            )


def load(
    target: str,
    name: str,
    version: str,
    model_file: Path,
    concurrency: int,
    args: argparse.Namespace,
    servers: list[Service],
) -> dict[str, float]:
    """One closed-loop run; adds the server processes' CPU use (cores busy)."""
    command = [
        "taskset",
        "-c",
        args.client_cpus,
        sys.executable,
        str(ROOT / "bench" / "loadgen.py"),
        "--target",
        target,
        "--model",
        name,
        "--version",
        version,
        "--model-file",
        str(model_file),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
    ]
    cpu_before = [s.cpu_seconds() for s in servers]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"loadgen failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout)
    if result["errors"] or result["wrong"]:
        raise SystemExit(f"errors or wrong answers: {result}")
    # CPU of each server process over the run (warmup included) per request served in it;
    # the warmup runs at the same rate, so this is the CPU one request costs.
    served = max(result["req_s"] * (args.duration + args.warmup), 1)
    for service, before in zip(servers, cpu_before, strict=True):
        result[f"{service.name}_cpu_ms"] = (service.cpu_seconds() - before) / served * 1e3
    result["server_cpu_per_req_ms"] = sum(result[f"{s.name}_cpu_ms"] for s in servers)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 2
    parser.add_argument("--server-cpus", default="0,1", help="CPUs of registry/inference/router")
    parser.add_argument(
        "--client-cpus",
        default="2,3" if cores >= 4 else "0,1",
        help="CPUs of the load generator (default: 2,3, or 0,1 on a machine with < 4 CPUs)",
    )
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--models", default="identity,mlp")
    parser.add_argument("--concurrency", default="1,64")
    args = parser.parse_args()
    models = args.models.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="router-bench-"))
    files = {}
    for model in models:
        files[model] = tmp / f"{model}.onnx"
        files[model].write_bytes(build(model).onnx_bytes)
    database = f"sqlite+aiosqlite:///{tmp / 'registry.db'}"
    subprocess.run(
        [sys.executable, "-m", "modelhub.registry.migrate", "upgrade", "--url", database],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    services: list[Service] = []
    try:
        registry = start(
            "registry",
            "registry",
            {"DATABASE_URL": database, "BLOB_DIR": str(tmp / "blobs")},
            args.server_cpus,
            tmp,
        )
        services.append(registry)
        asyncio.run(publish(registry.address, models))
        inference = start(
            "inference",
            "inference",
            {"REGISTRY_ADDRESS": registry.address, "CACHE_DIR": str(tmp / "cache")},
            args.server_cpus,
            tmp,
        )
        services.append(inference)
        router = start(
            "router",
            "router",
            {"REGISTRY_ADDRESS": registry.address, "BACKENDS": inference.address},
            args.server_cpus,
            tmp,
        )
        services.append(router)
        servers = [inference, router]
        time.sleep(1.0)  # deployments loaded, routing table synced

        rows = []
        for model in models:
            for concurrency in levels:
                direct = load(
                    inference.address, model, "1", files[model], concurrency, args, servers
                )
                routed = load(
                    router.address, f"{model}-ep", "", files[model], concurrency, args, servers
                )
                rows.append((model, concurrency, direct, routed))
        shadow_model = "mlp" if "mlp" in models else models[0]
        top = max(levels)
        plain = load(
            router.address, f"{shadow_model}-ep", "", files[shadow_model], top, args, servers
        )
        mirrored = load(
            router.address, f"{shadow_model}-shadow", "", files[shadow_model], top, args, servers
        )
    finally:
        for service in reversed(services):
            stop(service)

    print(
        f"\nRouter overhead — server CPUs {args.server_cpus} (registry, inference, router), "
        f"load generator CPUs {args.client_cpus}, {args.duration:.0f} s per run after "
        f"{args.warmup:.0f} s warmup, closed loop, 1 row per request"
    )
    header = (
        f"{'model':<9}{'conc':>5} | {'direct req/s':>12}{'p50 ms':>8}{'p99 ms':>8} | "
        f"{'router req/s':>12}{'p50 ms':>8}{'p99 ms':>8} | {'+p50 ms':>8}{'+p99 ms':>8}"
        f"{'thr ratio':>10} | {'CPU ms/req: inference':>21}{'router':>7}"
    )
    print(header)
    print("-" * len(header))
    for model, concurrency, direct, routed in rows:
        print(
            f"{model:<9}{concurrency:>5} | {direct['req_s']:>12.0f}{direct['p50_ms']:>8.2f}"
            f"{direct['p99_ms']:>8.2f} | {routed['req_s']:>12.0f}{routed['p50_ms']:>8.2f}"
            f"{routed['p99_ms']:>8.2f} | {routed['p50_ms'] - direct['p50_ms']:>+8.2f}"
            f"{routed['p99_ms'] - direct['p99_ms']:>+8.2f}"
            f"{routed['req_s'] / direct['req_s']:>10.2f} | "
            f"{routed['inference_cpu_ms']:>21.2f}{routed['router_cpu_ms']:>7.2f}"
        )
    share = 1 - plain["server_cpu_per_req_ms"] / mirrored["server_cpu_per_req_ms"]
    ratio = mirrored["req_s"] / plain["req_s"]
    print(
        f"\nShadow at 100% ({shadow_model}, concurrency {top}, through the router): "
        f"{plain['req_s']:.0f} → {mirrored['req_s']:.0f} primary req/s "
        f"(ratio {ratio:.2f}); server CPU per primary {plain['server_cpu_per_req_ms']:.2f} → "
        f"{mirrored['server_cpu_per_req_ms']:.2f} ms, so the shadow's CPU share is "
        f"{share:.0%}: the primary keeps ≥ 1 - share = {1 - share:.2f} "
        f"{'✓' if ratio >= (1 - share) * 0.97 else '✗'}"
    )
    print(f"(logs in {tmp})")


if __name__ == "__main__":
    main()
