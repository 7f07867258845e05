"""The front door's cost: the same load direct, through a bare Envoy hop and through
ModelHub's Envoy front door, side by side in one run.

Envoy carries every request straight to inference; the router only writes Envoy's dynamic
configuration (filesystem xDS, docs/data-plane.md). This starts, as processes pinned with
`taskset` to the server CPUs, a registry, a monitor, an inference server that reports
every request to the monitor, the router and Envoy, publishes two versions of the
reference model `mlp` (bench/models.py; same graph, other weights) behind two endpoints,
and drives closed-loop load with bench/loadgen.py (pinned to the client CPUs; it checks
every answer, and on an endpoint that the answer names its variant in the response
parameter `modelhub.variant` and carries that variant's outputs) along these paths:

1. `direct`: client → inference, requests naming model `mlp` versions 1 and 2 in turn
   (loadgen --alternate);
2. `bare hop`: the same requests through an Envoy with only the router filter and a static
   cluster → inference — what any extra proxy process in the path costs on this machine;
3. `front door`: client → ModelHub's Envoy (rendered from deploy/envoy/envoy.yaml.tmpl,
   routes written by the router) → inference, on endpoint `mlp-ab`: variants `champion`
   (v1) and `challenger` (v2) 50/50, sticky by header `x-user-id` (10,000 distinct keys);
4. `front door + 10% shadow`: the same on endpoint `mlp-ab-shadow`, which also mirrors
   10% of the keys to a shadow (v2);
5. with events off (unless --no-events-off): `direct`, `bare hop` and `front door` again
   through a second inference server (no monitor address), router, front door and bare hop,
   also pinned to the server CPUs.

Every path sends the same inputs with the same `x-user-id` header, so the client does the
same work on each, and inference runs both versions half the time on every path (the
front door's two variants are two models to batch: with one version on the other paths,
the comparison would measure the second version, not the front door). Each run measures req/s and latency (loadgen), and the CPU seconds
(utime + stime) of Envoy, the router, inference and the monitor over the measured window,
divided by the requests answered in it. Paths are interleaved across --repeat runs (the
order rotates) and medians are reported, in one markdown table, followed by the targets:

- front door ≥ 0.9 × the bare hop's req/s at concurrency 64;
- front door's CPU per request in front of inference (Envoy + router) ≤ 1.3 × the bare
  hop's (Envoy), at concurrency 64;
- at concurrency 1, the p50 the front door adds over direct ≤ the bare hop's + 0.2 ms.

    python bench/envoy_bench.py --duration 6 --warmup 1 --repeat 3
    python bench/envoy_bench.py --server-cpus 0,1 --client-cpus 2,3 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build  # noqa: E402
from modelhub.api.monitor.v1 import monitor_pb2 as mpb  # noqa: E402
from modelhub.api.monitor.v1 import monitor_pb2_grpc  # noqa: E402
from modelhub.api.oip import grpc_predict_v2_pb2 as oip  # noqa: E402
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc  # noqa: E402
from modelhub.api.registry.v1 import registry_pb2 as rpb  # noqa: E402
from modelhub.api.registry.v1 import registry_pb2_grpc  # noqa: E402
from modelhub.devstack.stack import free_port  # noqa: E402
from modelhub.router import envoy  # noqa: E402

MODEL = "mlp"
ENDPOINT = "mlp-ab"
SHADOW_ENDPOINT = "mlp-ab-shadow"
KEY_HEADER = "x-user-id"
VARIANTS = {"champion": 1, "challenger": 2}  # variant → version of `mlp`, 50/50
SHADOW_RATE = 0.1
SHADOW_VERSION = 2
INFERENCE_EVENTS = "modelhub_inference_monitor_events_total"

# A bare proxy hop: HTTP/2 in, HTTP/2 out, the router filter only, one static upstream.
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


# ------------------------------------------------------------------------ processes


@dataclass
class Service:
    """A started process (pinned) and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    metrics_port: int = 0

    @property
    def pid(self) -> int:
        # `taskset -c CPUS cmd` execs cmd: the pid is the service's own.
        return self.process.pid

    def cpus_allowed(self) -> str:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
        return "?"


def _log(tmp: Path, name: str) -> IO[bytes]:
    return (tmp / f"{name}.log").open("ab")


def start(name: str, module: str, env: dict[str, str], cpus: str, tmp: Path) -> Service:
    """`python -m modelhub.<module>` pinned to `cpus`, on an ephemeral port; waits for its
    ready file."""
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
        stderr=_log(tmp, name),
    )
    for _ in range(1200):
        if ready.exists():
            info = json.loads(ready.read_text())
            return Service(
                name, process, f"127.0.0.1:{info['port']}", int(info.get("metrics_port") or 0)
            )
        if process.poll() is not None:
            raise SystemExit(f"{name} exited:\n{(tmp / f'{name}.log').read_text()[-3000:]}")
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start")


def stop(service: Service) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(15)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait(5)


def _launch_envoy(name: str, config: Path, cpus: str, tmp: Path) -> subprocess.Popen[bytes]:
    # One worker thread for every Envoy: the server side has the same CPUs in every case.
    # stdout (the front door's access log) goes to /dev/null: written, not stored.
    command = ["taskset", "-c", cpus, envoy.envoy_binary(), "-c", str(config),
               "--disable-hot-restart", "--log-level", "error", "--concurrency", "1"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=_log(tmp, name))


def _wait_envoy_ready(name: str, process: subprocess.Popen[bytes], admin_port: int) -> None:
    url = f"http://127.0.0.1:{admin_port}/ready"
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"{name} exited (see its log)")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{name} was not ready")


def start_bare_hop(name: str, tmp: Path, cpus: str, upstream: str) -> Service:
    """An Envoy with only the router filter and a static cluster to `upstream`."""
    host, _, upstream_port = upstream.rpartition(":")
    port = free_port()
    admin_port = free_port()
    config = tmp / f"{name}.yaml"
    text = MINIMAL.format(port=port, host=host, upstream=upstream_port)
    text = f"admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}\n{text}"
    config.write_text(text)
    process = _launch_envoy(name, config, cpus, tmp)
    _wait_envoy_ready(name, process, admin_port)
    return Service(name, process, f"127.0.0.1:{port}")


def start_front_door(
    name: str,
    tmp: Path,
    cpus: str,
    xds_dir: Path,
    *,
    router: str,
    registry: str,
    monitor: str,
    inference: str,
) -> Service:
    """ModelHub's front door as `make up` starts it: the bootstrap rendered from the
    template (local variant), the xDS directory seeded before Envoy starts, the router
    writing routes into it."""
    params = replace(
        envoy.LOCAL,
        listen_port=free_port(),
        admin_port=free_port(),
        ops_port=free_port(),
        xds_dir=str(xds_dir),
        router=[router],
        registry=[registry],
        monitor=[monitor],
        inference=[inference],
    )
    envoy.seed(params)
    config = tmp / f"{name}.yaml"
    config.write_text(envoy.render(params), encoding="utf-8")
    process = _launch_envoy(name, config, cpus, tmp)
    _wait_envoy_ready(name, process, params.admin_port)
    return Service(name, process, f"127.0.0.1:{params.listen_port}")


# ------------------------------------------------------------------------ registry


async def publish(registry: str, files: dict[int, bytes]) -> None:
    """`mlp` versions 1 and 2, a deployment keeping both loaded, endpoint `mlp-ab`
    (champion v1 / challenger v2, 50/50, sticky by x-user-id) and `mlp-ab-shadow` (the
    same, mirroring 10% of the keys to v2)."""
    async with grpc.aio.insecure_channel(registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for data in files.values():

            async def chunks(data: bytes = data) -> AsyncIterator[rpb.UploadModelVersionRequest]:
                yield rpb.UploadModelVersionRequest(
                    metadata=rpb.UploadMetadata(
                        parent=f"models/{MODEL}",
                        create_model=True,
                        sha256=hashlib.sha256(data).hexdigest(),
                    )
                )
                for offset in range(0, len(data), 1 << 20):
                    yield rpb.UploadModelVersionRequest(chunk=data[offset : offset + (1 << 20)])

            await stub.UploadModelVersion(chunks())
        await stub.CreateDeployment(
            rpb.CreateDeploymentRequest(
                deployment_id=MODEL,
                deployment=rpb.Deployment(
                    model=f"models/{MODEL}",
                    versions=[rpb.VersionSelector(version=v) for v in files],
                ),
            )
        )
        variants = [
            rpb.Variant(
                name=name,
                model=f"models/{MODEL}",
                selector=rpb.VersionSelector(version=version),
                weight=50,
            )
            for name, version in VARIANTS.items()
        ]
        sticky = rpb.StickyKey(source=rpb.StickyKey.METADATA, name=KEY_HEADER)
        await stub.CreateEndpoint(
            rpb.CreateEndpointRequest(
                endpoint_id=ENDPOINT,
                endpoint=rpb.Endpoint(variants=variants, sticky_key=sticky),
            )
        )
        shadow = rpb.Shadow(
            name="next",
            model=f"models/{MODEL}",
            selector=rpb.VersionSelector(version=SHADOW_VERSION),
            sample_rate=SHADOW_RATE,
        )
        await stub.CreateEndpoint(
            rpb.CreateEndpointRequest(
                endpoint_id=SHADOW_ENDPOINT,
                endpoint=rpb.Endpoint(variants=variants, sticky_key=sticky, shadows=[shadow]),
            )
        )


async def wait_routed(front: str, endpoint: str, timeout_s: float = 90.0) -> None:
    """Until the front door answers `endpoint` with both variants (the router has written
    its route and both versions are loaded)."""
    request = oip.ModelInferRequest(model_name=endpoint)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 256])
    request.raw_input_contents.append(bytes(4 * 256))
    deadline = time.monotonic() + timeout_s
    last = ""
    async with grpc.aio.insecure_channel(front) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            seen: set[str] = set()
            try:
                for i in range(32):
                    answer = await stub.ModelInfer(
                        request, metadata=((KEY_HEADER, f"probe-{i}"),), timeout=10
                    )
                    seen.add(answer.parameters["modelhub.variant"].string_param)
            except grpc.aio.AioRpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            if seen == set(VARIANTS):
                return
            last = last or f"variants answering: {sorted(seen)}"
            await asyncio.sleep(0.5)
    raise SystemExit(f"{endpoint} not routed through {front} within {timeout_s:.0f}s ({last})")


async def monitor_counts(monitor: str) -> dict[str, int]:
    """Requests the monitor received per endpoint/variant over the last hour."""
    async with grpc.aio.insecure_channel(monitor) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        answer = await stub.ListStats(mpb.ListStatsRequest(window_seconds=3600), timeout=30)
    out: dict[str, int] = {}
    for stats in answer.stats:
        key = f"{stats.key.endpoint or '(direct)'}/{stats.key.variant or '-'} v{stats.key.version}"
        out[key] = out.get(key, 0) + int(stats.requests)
    return out


def scrape(port: int, metric: str) -> dict[str, float]:
    """Samples of `metric` (label set → value) from a Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric):
            labels, _, value = line[len(metric) :].rpartition(" ")
            out[labels or "{}"] = float(value)
    return out


# ---------------------------------------------------------------------- measuring


@dataclass
class BenchPath:
    """One way from the load generator to inference."""

    label: str
    target: str
    model: str
    version: str
    variants: dict[str, Path]
    # Processes in front of inference (their CPU per request is the path's cost).
    front: list[Service]
    # Processes behind it (reported for reference).
    back: list[Service]
    events: bool
    # Versions the requests name in turn (loadgen --alternate), each with its model file.
    alternate: dict[str, Path] = field(default_factory=dict)
    runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def run_load(
    path: BenchPath, concurrency: int, model_file: Path, args: argparse.Namespace
) -> dict[str, Any]:
    command = [
        "taskset", "-c", args.client_cpus, sys.executable, str(ROOT / "bench" / "loadgen.py"),
        "--target", path.target, "--model", path.model, "--version", path.version,
        "--model-file", str(model_file), "--rows", "1", "--concurrency", str(concurrency),
        "--duration", str(args.duration), "--warmup", str(args.warmup),
        "--key-header", KEY_HEADER, "--keys", str(args.keys),
    ]  # fmt: skip
    for name, file in path.variants.items():
        command += ["--variant", f"{name}={file}"]
    for version, file in path.alternate.items():
        command += ["--alternate", f"{version}={file}"]
    for service in path.front + path.back:
        command += ["--cpu-pid", f"{service.name}={service.pid}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"loadgen failed on {path.label}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if not result["ok"]:
        raise SystemExit(f"no correct answer on {path.label}: {result}")
    answered = max(int(result["requests"]), 1)
    cpu: dict[str, float] = result["cpu_s"]
    result["front_us"] = sum(cpu[s.name] for s in path.front) / answered * 1e6
    for service in path.front + path.back:
        result[f"{service.name}_us"] = cpu[service.name] / answered * 1e6
    return result


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in runs))


def rotations(items: list[BenchPath], times: int) -> Iterator[list[BenchPath]]:
    for i in range(times):
        k = i % len(items)
        yield items[k:] + items[:k]


# ---------------------------------------------------------------------------- main


@dataclass
class Shared:
    """What every stack uses: the registry, the monitor and the model files."""

    registry: Service
    monitor: Service
    variant_files: dict[str, Path]
    tmp: Path
    cpus: str


def start_stack(
    shared: Shared, events: bool, keep: Callable[[Service], Service]
) -> tuple[Service, list[BenchPath]]:
    """An inference server (reporting to the monitor when `events`), its router, front
    door and bare hop; returns the inference server and the paths through them."""
    suffix = "" if events else "-noev"
    tmp, cpus, registry, monitor = shared.tmp, shared.cpus, shared.registry, shared.monitor
    env = {
        "REGISTRY_ADDRESS": registry.address,
        "CACHE_DIR": str(tmp / f"cache{suffix}"),
        "METRICS_PORT": "0",
    }
    if events:
        env["MONITOR_ADDRESS"] = monitor.address
    inference = keep(start(f"inference{suffix}", "inference", env, cpus, tmp))
    xds_dir = tmp / f"xds{suffix}"
    router_env = {
        "REGISTRY_ADDRESS": registry.address,
        "BACKENDS": inference.address,
        "ENVOY_CONFIG_DIR": str(xds_dir),
        "CONFIG_WARM_S": "0.2",
    }
    router = keep(start(f"router{suffix}", "router", router_env, cpus, tmp))
    front = keep(
        start_front_door(
            f"envoy{suffix}",
            tmp,
            cpus,
            xds_dir,
            router=router.address,
            registry=registry.address,
            monitor=monitor.address,
            inference=inference.address,
        )
    )
    hop = keep(start_bare_hop(f"envoy-hop{suffix}", tmp, cpus, inference.address))
    asyncio.run(wait_routed(front.address, ENDPOINT))
    back = [inference, monitor] if events else [inference]
    tag = "" if events else ", events off"
    # Direct and through the bare hop, requests name the endpoint's versions in turn: the
    # front door's two variants make inference run both versions (two batch queues), and
    # every path gives inference the same work.
    alternate = {str(VARIANTS[name]): file for name, file in shared.variant_files.items()}
    paths = [
        BenchPath(f"direct{tag}", inference.address, MODEL, "", {}, [], back, events, alternate),
        BenchPath(f"bare hop{tag}", hop.address, MODEL, "", {}, [hop], back, events, alternate),
        BenchPath(
            f"front door{tag}",
            front.address,
            ENDPOINT,
            "",
            shared.variant_files,
            [front, router],
            back,
            events,
        ),
    ]
    if events:
        asyncio.run(wait_routed(front.address, SHADOW_ENDPOINT))
        paths.append(
            BenchPath(
                "front door + 10% shadow",
                front.address,
                SHADOW_ENDPOINT,
                "",
                shared.variant_files,
                [front, router],
                back,
                events,
            )
        )
    return inference, paths


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Pinning and timing options every front-door benchmark here shares."""
    cores = os.cpu_count() or 2
    parser.add_argument(
        "--server-cpus",
        default="0" if cores < 4 else "0,1",
        help="CPUs of every server process: registry, monitor, inference, router, Envoy "
        "(default 0; 0,1 with ≥ 4 CPUs)",
    )
    parser.add_argument(
        "--client-cpus",
        default="1" if cores < 4 else "2,3",
        help="CPUs of the load generator (default 1; 2,3 with ≥ 4 CPUs)",
    )
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per cell")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct sticky keys")


def write_models(tmp: Path) -> dict[int, Path]:
    """The versions of the benchmark model as ONNX files in `tmp`, by version."""
    model_files: dict[int, Path] = {}
    for version in sorted(set(VARIANTS.values())):
        model_files[version] = tmp / f"{MODEL}-v{version}.onnx"
        model_files[version].write_bytes(build(MODEL, version).onnx_bytes)
    return model_files


def start_shared(
    tmp: Path, cpus: str, model_files: dict[int, Path], keep: Callable[[Service], Service]
) -> Shared:
    """Migrated SQLite databases, a registry holding the model's versions and a monitor."""
    registry_db = f"sqlite+aiosqlite:///{tmp / 'registry.db'}"
    monitor_db = f"sqlite+aiosqlite:///{tmp / 'monitor.db'}"
    subprocess.run(
        [sys.executable, "-m", "modelhub.registry.migrate", "upgrade", "--url", registry_db],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "modelhub.monitor.migrate", "--database-url", monitor_db,
         "upgrade"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    registry_env = {"DATABASE_URL": registry_db, "BLOB_DIR": str(tmp / "blobs")}
    registry = keep(start("registry", "registry", registry_env, cpus, tmp))
    asyncio.run(publish(registry.address, {v: f.read_bytes() for v, f in model_files.items()}))
    monitor_env = {"DATABASE_URL": monitor_db, "REGISTRY_ADDRESS": registry.address}
    monitor = keep(start("monitor", "monitor", monitor_env, cpus, tmp))
    variant_files = {n: model_files[v] for n, v in VARIANTS.items()}
    return Shared(registry, monitor, variant_files, tmp, cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--concurrency", default="64,1")
    parser.add_argument(
        "--no-events-off",
        action="store_true",
        help="skip the second stack, whose inference sends no events (saves 3/7 of the time)",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="envoy-bench-"))
    model_files = write_models(tmp)
    cpus = args.server_cpus
    services: list[Service] = []
    paths: list[BenchPath] = []
    notes: list[str] = []

    def keep(service: Service) -> Service:
        services.append(service)
        return service

    try:
        shared = start_shared(tmp, cpus, model_files, keep)
        inference, on_paths = start_stack(shared, True, keep)
        paths += on_paths
        if not args.no_events_off:
            paths += start_stack(shared, False, keep)[1]
        pinning = {s.name: s.cpus_allowed() for s in services}
        if any(allowed != cpus for allowed in pinning.values()):
            notes.append(f"pinning differs from --server-cpus {cpus}: {pinning}")
        events_before = scrape(inference.metrics_port, INFERENCE_EVENTS)
        time.sleep(1.0)
        for runs in rotations(paths, args.repeat):  # interleaved: drift hits every path
            for concurrency in levels:
                for path in runs:
                    result = run_load(path, concurrency, model_files[1], args)
                    path.runs.setdefault(concurrency, []).append(result)
                    print(
                        f"  {path.label:<24} c={concurrency:<3} {result['req_s']:>7.0f} req/s "
                        f"p50 {result['p50_ms']:.2f} ms  front {result['front_us']:.0f} µs/req "
                        f"errors {result['errors'] + result['wrong']}",
                        file=sys.stderr,
                        flush=True,
                    )
        time.sleep(2.5)  # inference sends events in batches, at least every second
        events_after = scrape(inference.metrics_port, INFERENCE_EVENTS)
        received = asyncio.run(monitor_counts(shared.monitor.address))
    finally:
        for service in reversed(services):
            stop(service)

    report(paths, levels, args, pinning, events_before, events_after, received, notes, tmp)


def _sum_counts(runs: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for run in runs:
        for name, count in run[key].items():
            out[name] = out.get(name, 0) + int(count)
    return out


def targets(paths: dict[str, BenchPath], levels: list[int], tag: str) -> list[str]:
    """The three targets, for the paths labelled with `tag` ("" or ", events off")."""
    hop, front, direct = (paths[f"{p}{tag}"] for p in ("bare hop", "front door", "direct"))
    lines = []
    top = max(levels)
    if top > 1:
        a, b = median(front.runs[top], "req_s"), median(hop.runs[top], "req_s")
        lines.append(
            f"- front door ≥ 0.9× bare hop req/s at c={top}: {a:.0f} vs {b:.0f} req/s = "
            f"{a / b:.2f}× — {'met' if a >= 0.9 * b else 'missed'}"
        )
        a, b = median(front.runs[top], "front_us"), median(hop.runs[top], "front_us")
        lines.append(
            f"- front CPU/req ≤ 1.3× bare hop's at c={top}: {a:.0f} vs {b:.0f} µs = "
            f"{a / b:.2f}× — {'met' if a <= 1.3 * b else 'missed'}"
        )
    if 1 in levels:
        base = median(direct.runs[1], "p50_ms")
        added_front = median(front.runs[1], "p50_ms") - base
        added_hop = median(hop.runs[1], "p50_ms") - base
        lines.append(
            f"- c=1 p50 added over direct ≤ bare hop's added + 0.2 ms: front door "
            f"{added_front:+.2f} ms, bare hop {added_hop:+.2f} ms (limit {added_hop + 0.2:+.2f}) "
            f"— {'met' if added_front <= added_hop + 0.2 else 'missed'}"
        )
    return lines


def report(
    paths: list[BenchPath],
    levels: list[int],
    args: argparse.Namespace,
    pinning: dict[str, str],
    events_before: dict[str, float],
    events_after: dict[str, float],
    received: dict[str, int],
    notes: list[str],
    tmp: Path,
) -> None:
    by_label = {p.label: p for p in paths}

    def cell(path: BenchPath, c: int, key: str) -> float:
        return median(path.runs[c], key)

    def hop_of(path: BenchPath) -> BenchPath:
        return by_label["bare hop" if path.events else "bare hop, events off"]

    print(
        f"\nFront door cost — model {MODEL}, 1 row, closed loop. Server side "
        f"({', '.join(pinning)}; every Envoy with 1 worker) pinned to CPUs {args.server_cpus}, "
        f"load generator to CPUs {args.client_cpus}; {args.duration:g} s measured after "
        f"{args.warmup:g} s warmup per run; median of {args.repeat} interleaved runs; every "
        f"path sends header {KEY_HEADER} with {args.keys} distinct keys.\n"
    )
    print(
        "| path | events | c | req/s | ratio vs bare hop | p50 ms | p99 ms | errors "
        "| front CPU µs/req | ratio vs bare hop CPU |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for c in levels:
        for path in paths:
            hop = hop_of(path)
            req_s = cell(path, c, "req_s")
            errors = sum(int(r["errors"]) + int(r["wrong"]) for r in path.runs[c])
            if path.front:
                front_us = cell(path, c, "front_us")
                front_cell = f"{front_us:.0f}"
                if len(path.front) > 1:
                    parts = " + ".join(f"{cell(path, c, f'{s.name}_us'):.0f}" for s in path.front)
                    front_cell += f" ({parts})"
                cpu_ratio = f"{front_us / cell(hop, c, 'front_us'):.2f}"
            else:
                front_cell, cpu_ratio = "—", "—"
            print(
                f"| {path.label} | {'on' if path.events else 'off'} | {c} | {req_s:.0f} "
                f"| {req_s / cell(hop, c, 'req_s'):.2f} | {cell(path, c, 'p50_ms'):.2f} "
                f"| {cell(path, c, 'p99_ms'):.2f} | {errors} | {front_cell} | {cpu_ratio} |"
            )
    print(
        "\nevents on: that inference reports every request (direct ones too) to the monitor, "
        "which runs on the server CPUs; off: a second inference, router, front door and "
        "bare hop whose inference has no monitor address. Ratios are against the bare hop "
        "of the same events setting. front CPU: utime + stime over the measured window ÷ "
        "requests answered in it, of the processes in front of inference — the bare hop's "
        "Envoy; the front door's Envoy + router (in parentheses: Envoy + router). errors: "
        "failed calls + wrong answers (every answer is checked; on an endpoint it must name "
        "its variant in `modelhub.variant` and carry that version's outputs)."
    )
    print("\nTargets (events on):")
    print("\n".join(targets(by_label, levels, "")))
    if "front door, events off" in by_label:
        print("\nThe same targets with events off:")
        print("\n".join(targets(by_label, levels, ", events off")))

    print("\nDetails (medians): CPU µs per request behind the front, client CPU, variant split")
    for c in levels:
        for path in paths:
            behind = ", ".join(f"{s.name} {cell(path, c, f'{s.name}_us'):.0f}" for s in path.back)
            split = _sum_counts(path.runs[c], "variants")
            total = sum(split.values())
            shares = " / ".join(f"{n} {k / total:.0%}" for n, k in sorted(split.items()))
            codes = _sum_counts(path.runs[c], "error_codes")
            print(
                f"  {path.label:<26} c={c:<3} {behind}; client CPU "
                f"{cell(path, c, 'client_cpu'):.2f}; variants {shares or '—'}"
                + (f"; errors {codes}" if codes else "")
            )
    sent = {k: events_after.get(k, 0.0) - events_before.get(k, 0.0) for k in events_after}
    print(f"\nEvents of the events-on inference during the runs: {sent}")
    print(f"Events the monitor holds (ListStats, 1 h window): {received}")
    print(f"Pinning (Cpus_allowed_list): {pinning}")
    for note in notes:
        print(f"NOTE: {note}")
    print(f"(logs in {tmp})")


if __name__ == "__main__":
    main()
