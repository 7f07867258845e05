"""`make up`: the whole suite as local processes, with a demo model registered and routed.

Starts each service with its embedded defaults (SQLite and artifacts under var/, ONNX
Runtime on CPU or GPU), waits for every health check, registers the demo model, sends a
little traffic and prints what to try. Ctrl-C stops everything cleanly; data in var/
survives for the next run. Logs: var/logs/<service>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub import demo
from modelhub.client import ClientError, RegistryClient


@dataclass
class Migration:
    """A schema upgrade the stack runs before starting the service that needs it."""

    name: str
    command: list[str]
    env: dict[str, str]


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = 0
    # gRPC health checks on 127.0.0.1:port when set; else only "process is running".
    grpc_health: bool = True


@dataclass
class Running:
    spec: ServiceSpec
    process: asyncio.subprocess.Process
    log: Path


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Stack:
    """Starts, watches and stops the local processes of the suite."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.logs = var / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: list[Running] = []

    async def start(self, spec: ServiceSpec, timeout: float = 90.0) -> None:
        log = self.logs / f"{spec.name}.log"
        handle = log.open("ab")
        env = {**os.environ, "MODELHUB_LOG_FORMAT": "json", **spec.env}
        process = await asyncio.create_subprocess_exec(
            *spec.command,
            stdout=handle,
            stderr=handle,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops children in order
        )
        handle.close()
        self.running.append(Running(spec, process, log))
        await self._wait_healthy(spec, process, log, timeout)

    async def _wait_healthy(
        self, spec: ServiceSpec, process: asyncio.subprocess.Process, log: Path, timeout: float
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{spec.name} exited with {process.returncode}:\n{tail}")
            if not spec.grpc_health:
                await asyncio.sleep(0.5)
                return
            with contextlib.suppress(grpc.aio.AioRpcError):
                async with grpc.aio.insecure_channel(f"127.0.0.1:{spec.port}") as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{spec.name} did not become healthy within {timeout:.0f}s (see {log})")

    async def stop(self) -> None:
        for running in reversed(self.running):
            if running.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    running.process.send_signal(signal.SIGTERM)
        for running in reversed(self.running):
            try:
                await asyncio.wait_for(running.process.wait(), 20)
            except TimeoutError:
                running.process.kill()
                await running.process.wait()
        self.running.clear()

    async def watch(self) -> Running:
        """Return the first process that exits."""
        waits = {asyncio.ensure_future(r.process.wait()): r for r in self.running}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[done.pop()]


@dataclass
class Ports:
    registry: int = 50051
    inference: int = 50052
    router: int = 50053
    monitor: int = 50054
    envoy: int = 8080
    envoy_admin: int = 9901
    metrics_base: int = 9101


def service_specs(var: Path, ports: Ports) -> list[ServiceSpec]:
    """The processes of the local suite, in start order (those whose code is present)."""
    python = sys.executable
    specs = [
        ServiceSpec(
            "registry",
            [python, "-m", "modelhub.registry"],
            ports.registry,
            {
                "MODELHUB_REGISTRY_PORT": str(ports.registry),
                "MODELHUB_REGISTRY_METRICS_PORT": str(ports.metrics_base),
                "MODELHUB_REGISTRY_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'registry.db'}",
                "MODELHUB_REGISTRY_BLOB_DIR": str(var / "blobs"),
            },
            metrics_port=ports.metrics_base,
        )
    ]
    if available("modelhub.monitor.main"):
        specs.append(
            ServiceSpec(
                "monitor",
                [python, "-m", "modelhub.monitor"],
                ports.monitor,
                {
                    "MODELHUB_MONITOR_PORT": str(ports.monitor),
                    "MODELHUB_MONITOR_METRICS_PORT": str(ports.metrics_base + 3),
                    "MODELHUB_MONITOR_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'monitor.db'}",
                    "MODELHUB_MONITOR_REGISTRY_ADDRESS": f"127.0.0.1:{ports.registry}",
                },
                metrics_port=ports.metrics_base + 3,
            )
        )
    return specs


def migrations(var: Path) -> list[Migration]:
    """Schema upgrades; each reads its database URL from its service's settings variable."""
    python = sys.executable
    found = [
        Migration(
            "registry",
            [python, "-m", "modelhub.registry.migrate", "upgrade"],
            {"MODELHUB_REGISTRY_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'registry.db'}"},
        )
    ]
    if available("modelhub.monitor.migrate"):
        found.append(
            Migration(
                "monitor",
                [python, "-m", "modelhub.monitor.migrate", "upgrade"],
                {"MODELHUB_MONITOR_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'monitor.db'}"},
            )
        )
    return found


async def migrate(stack: Stack, var: Path) -> None:
    for migration in migrations(var):
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
        print(f"{migration.name} schema is current", flush=True)


def _write_model(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def register_demo(registry: str) -> list[str]:
    """Register the demo model (idempotent: a second `make up` reuses what is there)."""
    from modelhub.registry.convert import profile_from_dict

    notes: list[str] = []
    async with RegistryClient(registry) as client:
        try:
            versions = await client.list_versions("fraud")
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            versions = []
        if len(versions) < 2:
            profile = profile_from_dict(demo.data_profile(demo.training_sample()))
            with tempfile.TemporaryDirectory() as tmp:
                for number in (1, 2):
                    path = _write_model(
                        Path(tmp) / f"fraud-v{number}.onnx", demo.classifier(number)
                    )
                    version = await client.push(
                        "fraud",
                        path,
                        description=f"demo fraud classifier v{number}",
                        author="modelhub-demo",
                        aliases=["champion"] if number == 1 else ["challenger"],
                        data_profile=profile,
                    )
                    notes.append(f"registered {version.name}")
        else:
            notes.append(f"reusing models/fraud ({len(versions)} versions)")
    return notes


async def run(args: argparse.Namespace) -> int:
    var = Path(args.var).resolve()
    ports = Ports()
    stack = Stack(var)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await migrate(stack, var)
        specs = service_specs(var, ports)
        for spec in specs:
            print(f"starting {spec.name} on 127.0.0.1:{spec.port} …", flush=True)
            await stack.start(spec)
        for note in await register_demo(f"127.0.0.1:{ports.registry}"):
            print(note)
        print(banner(ports, var, specs))
        if args.check:
            return 0
        watcher = asyncio.ensure_future(stack.watch())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            crashed = watcher.result()
            print(f"{crashed.spec.name} exited unexpectedly; see {crashed.log}", file=sys.stderr)
            return 1
        watcher.cancel()
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping …", flush=True)
        await stack.stop()


def banner(ports: Ports, var: Path, specs: list[ServiceSpec]) -> str:
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    lines = [
        "",
        "ModelHub is up.",
        *(
            f"  {spec.name:<10} 127.0.0.1:{spec.port:<6} "
            f"metrics http://127.0.0.1:{spec.metrics_port}/metrics"
            for spec in specs
        ),
        "",
        "Try:",
        f"  {grpcurl} -plaintext 127.0.0.1:{ports.registry} list",
        f'  {grpcurl} -plaintext -d \'{{"parent": "models/fraud"}}\' 127.0.0.1:{ports.registry} '
        "modelhub.registry.v1.RegistryService/ListModelVersions",
        f"  {Path(sys.executable).parent / 'modelhub'} versions list fraud",
        "",
        f"Logs in {var / 'logs'}. Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.stack", description=__doc__)
    parser.add_argument("--var", default="var", help="data and log directory (default var/)")
    parser.add_argument(
        "--check", action="store_true", help="start, register the demo, then stop (smoke test)"
    )
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
