"""A real monitor server on 127.0.0.1:0, in-process, over a migrated SQLite database in a
temporary directory, with a manual clock so that windows and alerts are deterministic."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelhub.api.monitor.v1 import monitor_pb2_grpc
from modelhub.monitor import migrate
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.main import MonitorApp, build
from modelhub.monitor.settings import MonitorSettings


@dataclass
class Service:
    app: MonitorApp
    clock: ManualClock
    channel: grpc.aio.Channel
    stub: monitor_pb2_grpc.MonitorServiceStub
    database_url: str

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.app.runtime.metrics_port}/metrics"

    async def close(self) -> None:
        await self.channel.close()
        await self.app.stop(0)


async def start_service(database_url: str, clock: ManualClock, **overrides: Any) -> Service:
    options: dict[str, Any] = {
        "database_url": database_url,
        "host": "127.0.0.1",
        "port": 0,
        # No metrics HTTP server unless a test asks for one: stopping it blocks for its
        # 0.5 s poll interval.
        "metrics_port": -1,
        "grace_period_s": 1.0,
        # Tests evaluate rules explicitly (deterministic); the loop stays out of the way.
        "evaluation_interval_s": 3600.0,
    }
    options.update(overrides)
    settings = MonitorSettings(**options)
    app = await build(settings, clock=clock, rng=random.Random(0))
    await app.start()
    channel = grpc.aio.insecure_channel(app.runtime.address)
    return Service(app, clock, channel, monitor_pb2_grpc.MonitorServiceStub(channel), database_url)


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"
    await migrate.upgrade(url)
    return url


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[Service]:
    started = await start_service(database_url, ManualClock())
    yield started
    await started.close()
