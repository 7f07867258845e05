"""Fixtures of the monitor's unit tests: a manual clock, a migrated SQLite store in a
temporary directory and a Monitor over them."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelhub.monitor import migrate
from modelhub.monitor.clock import ManualClock
from modelhub.monitor.monitor import Monitor
from modelhub.monitor.settings import MonitorSettings
from modelhub.monitor.store import MonitorStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture
def settings(database_url: str) -> MonitorSettings:
    return MonitorSettings(database_url=database_url, metrics_port=-1)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MonitorStore]:
    await migrate.upgrade(database_url)
    store = MonitorStore.from_url(database_url)
    yield store
    await store.close()


@pytest.fixture
async def monitor(settings: MonitorSettings, store: MonitorStore, clock: ManualClock) -> Monitor:
    monitor = Monitor(settings, store, clock=clock, rng=random.Random(7))
    await monitor.start()
    return monitor
