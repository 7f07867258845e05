"""`python -m modelhub.monitor` as operators run it: refuses an unmigrated database and
names the upgrade command; after `python -m modelhub.monitor.migrate upgrade` it serves,
writes its ready file, answers health checks and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelhub.api.monitor.v1 import monitor_pb2 as pb
from modelhub.api.monitor.v1 import monitor_pb2_grpc


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MODELHUB_MONITOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db' / 'm.db'}",
            "MODELHUB_MONITOR_PORT": "0",
            "MODELHUB_MONITOR_METRICS_PORT": "-1",
            "MODELHUB_MONITOR_READY_FILE": str(tmp_path / "ready.json"),
            "MODELHUB_LOG_FORMAT": "text",
            "OTEL_TRACES_EXPORTER": "none",
        }
    )
    return env


async def _run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_refuses_an_unmigrated_database_then_serves_after_upgrade(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, output = await _run(["-m", "modelhub.monitor"], env)
    assert code == 2
    assert "python -m modelhub.monitor.migrate upgrade" in output

    code, output = await _run(["-m", "modelhub.monitor.migrate", "upgrade"], env)
    assert code == 0, output

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelhub.monitor", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        ready = tmp_path / "ready.json"
        async with asyncio.timeout(30):
            while not ready.exists():
                assert process.returncode is None, await process.stderr.read()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="modelhub.monitor.v1.MonitorService")
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            stats = await stub.GetStats(pb.GetStatsRequest())
            assert stats.window_seconds == 300
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
