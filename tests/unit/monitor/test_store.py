"""The monitor database: migrations match the ORM, the service refuses an old schema,
rules/baselines/drift configs persist. Runs on SQLite, and on PostgreSQL when available."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from modelhub.common.db import create_engine
from modelhub.common.errors import SchemaOutdatedError
from modelhub.monitor import migrate
from modelhub.monitor.drift import DriftConfig, PartialThresholds
from modelhub.monitor.profile import Baseline, DataProfile, FeatureProfile
from modelhub.monitor.rules import AlertRule, Comparator
from modelhub.monitor.series import SeriesKey
from modelhub.monitor.store import Base, MonitorStore

POSTGRES_URL = os.environ.get(
    "MODELHUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


async def _postgres_reachable() -> bool:
    engine = create_engine(POSTGRES_URL)
    try:
        async with asyncio.timeout(3), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    if not await _postgres_reachable():
        if os.environ.get("MODELHUB_REQUIRE_POSTGRES", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL required but not reachable at {POSTGRES_URL}")
        pytest.skip("PostgreSQL not reachable")
    # A schema of its own: parallel tests and other services share the database.
    schema = f"monitor_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    async with admin.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def _diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"version_table": migrate.VERSION_TABLE, "compare_type": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_orm_models(url: str) -> None:
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert await conn.run_sync(migrate.current_revision) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_store_refuses_an_outdated_schema_and_names_the_upgrade(url: str) -> None:
    store = MonitorStore.from_url(url)
    try:
        with pytest.raises(SchemaOutdatedError) as err:
            await store.check_schema()
        assert "python -m modelhub.monitor.migrate upgrade" in err.value.message
        await migrate.upgrade(url)
        await store.check_schema()
        await migrate.downgrade(url, "base")
        with pytest.raises(SchemaOutdatedError, match="none"):
            await store.check_schema()
    finally:
        await store.close()


async def test_rules_baselines_and_configs_persist(url: str) -> None:
    await migrate.upgrade(url)
    store = MonitorStore.from_url(url)
    rule = AlertRule(
        rule_id="errors",
        display_name="errors",
        metric="error_rate",
        series=SeriesKey("models/fraud", 2, "endpoints/fraud", "champion", "router"),
        comparator=Comparator.GREATER_OR_EQUAL,
        threshold=0.1,
        window_s=60,
        for_s=12.5,
        webhook_url="http://hooks/x",
        create_time=1_700_000_000.25,
        update_time=1_700_000_001.5,
        etag="e1",
    )
    profile = DataProfile(
        [FeatureProfile("x", "numeric", [0.0, 1.0, 2.0], [3.0, 4.0], count=7)],
        [FeatureProfile("y", "categorical", counts=[1.0], categories=["a"])],
    )
    try:
        await store.create_rule(rule, max_rules=10)
        await store.put_baseline(Baseline("models/fraud", 2, profile, "monitor", 1_700_000_000))
        await store.put_drift_config(DriftConfig("models/fraud", PartialThresholds(psi=0.3)))
    finally:
        await store.close()
    reopened = MonitorStore.from_url(url)
    try:
        assert await reopened.get_rule("errors") == rule
        baseline = await reopened.get_baseline("models/fraud", 2)
        assert baseline is not None and baseline.profile == profile
        config = await reopened.get_drift_config("models/fraud")
        assert config is not None and config.thresholds == PartialThresholds(psi=0.3)
        assert await reopened.get_baseline("models/fraud", 3) is None
    finally:
        await reopened.close()
