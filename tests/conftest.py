"""Shared fixtures: databases (SQLite and the local PostgreSQL), an in-process registry."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from modelhub.api.registry.v1 import registry_pb2_grpc
from modelhub.registry.main import RegistryApp
from modelhub.registry.migrate import upgrade
from modelhub.registry.settings import RegistrySettings

PG_HOST = os.environ.get("MODELHUB_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MODELHUB_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MODELHUB_TEST_PG_USER", "postgres")
PG_DB = os.environ.get("MODELHUB_TEST_PG_DB", "test")


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    reachable = _postgres_reachable()
    if not reachable and os.environ.get("MODELHUB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required but not reachable on {PG_HOST}:{PG_PORT}")
    return reachable


def migrate(url: str) -> None:
    """Upgrade a database to the newest schema. Alembic's env runs its own event loop, so it
    runs in a worker thread: asyncio.run() in this thread would unset pytest-asyncio's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()


def _pg_admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_DB, autocommit=True
    ) as conn:
        conn.execute(sql)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool
) -> Iterator[str]:
    """A migrated, empty registry database: SQLite in tmp_path, or a fresh PostgreSQL
    schema in the local `test` database (dropped afterwards)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
        migrate(url)
        yield url
        return
    if not postgres_available:
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _pg_admin_execute(f'CREATE SCHEMA "{schema}"')
    url = (
        f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"
        f"?options=-csearch_path%3D{schema}"
    )
    try:
        migrate(url)
        yield url
    finally:
        _pg_admin_execute(f'DROP SCHEMA "{schema}" CASCADE')


def registry_settings(database_url: str, tmp_path: Path, **overrides: object) -> RegistrySettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": -1,
        "database_url": database_url,
        "blob_dir": str(tmp_path / "blobs"),
        "grace_period_s": 1.0,
        "watch_poll_s": 0.2,
    }
    values.update(overrides)
    return RegistrySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def registry(database_url: str, tmp_path: Path) -> AsyncIterator[RegistryApp]:
    """A registry serving on 127.0.0.1:<ephemeral>, on SQLite and on PostgreSQL."""
    app = RegistryApp(registry_settings(database_url, tmp_path))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(2)


@pytest.fixture
async def registry_stub(
    registry: RegistryApp,
) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(registry.address) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


@pytest.fixture
async def registry_address(tmp_path: Path) -> AsyncIterator[str]:
    """An in-process registry on SQLite (for other services' tests): "127.0.0.1:PORT"."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await asyncio.to_thread(upgrade, url)
    app = RegistryApp(registry_settings(url, tmp_path, blob_dir=str(tmp_path / "registry-blobs")))
    await app.start()
    try:
        yield app.address
    finally:
        await app.stop(2)
