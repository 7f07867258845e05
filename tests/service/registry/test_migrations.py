"""The Alembic migrations produce exactly the schema the code declares."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from modelhub.common.db import create_engine
from modelhub.common.errors import SchemaOutdatedError
from modelhub.registry.migrate import MIGRATIONS, check_schema, downgrade, upgrade
from modelhub.registry.store.tables import metadata


def _diff(conn: sa.Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_match_the_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        await check_schema(engine)
    finally:
        await engine.dispose()


async def test_schema_check_refuses_old_schema(database_url: str) -> None:
    import asyncio

    await asyncio.to_thread(downgrade, database_url, "base")
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaOutdatedError, match="make migrate") as info:
            await check_schema(engine)
        assert info.value.metadata["required"] == MIGRATIONS.head()
        assert "python -m modelhub.registry.migrate upgrade" in info.value.message
    finally:
        await engine.dispose()
    await asyncio.to_thread(upgrade, database_url)


def test_a_divergence_is_detected(tmp_path) -> None:
    """The comparison itself notices a column the migrations do not create."""
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    extra = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extra)
    extra.tables["models"].append_column(sa.Column("owner", sa.String(10)))

    def diff(conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(conn)
        return list(compare_metadata(context, extra))

    async def run() -> list[object]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    changes = asyncio.run(run())
    assert any("owner" in str(change) for change in changes)
