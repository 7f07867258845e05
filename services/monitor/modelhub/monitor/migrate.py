"""Schema migrations of the monitor database (a deployment step, run by `make migrate`).

    python -m modelhub.monitor.migrate upgrade [REVISION]     # default: head
    python -m modelhub.monitor.migrate downgrade REVISION     # e.g. base
    python -m modelhub.monitor.migrate current

The database URL is MODELHUB_MONITOR_DATABASE_URL (the service's own setting) unless
`--database-url` is given. The service refuses to start on a schema that is not at head.
Alembic keeps the revision in its own table, `monitor_alembic_version`, so that the monitor
and the registry can share one PostgreSQL database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "monitor_alembic_version"


def alembic_config(url: str = "") -> Config:
    """Alembic configuration for the monitor's migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser interpolates '%': URL-encoded passwords must be escaped.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the monitor ships at least one migration"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None: never migrated)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _run(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


async def _migrate(url: str, action: str, revision: str) -> None:
    from modelhub.monitor.store import engine_for  # the store imports this module

    engine = engine_for(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run, action, revision)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`."""
    await _migrate(url, "upgrade", revision)


async def downgrade(url: str, revision: str) -> None:
    await _migrate(url, "downgrade", revision)


async def current(url: str) -> str | None:
    from modelhub.monitor.store import engine_for

    engine = engine_for(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(current_revision)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelhub.monitor.migrate", description="Monitor database migrations."
    )
    parser.add_argument("--database-url", default="", help="default: the service's setting")
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("upgrade", help="upgrade to a revision (default head)")
    up.add_argument("revision", nargs="?", default="head")
    down = actions.add_parser("downgrade", help="downgrade to a revision (e.g. base)")
    down.add_argument("revision")
    actions.add_parser("current", help="print the database's revision")
    args = parser.parse_args(argv)

    from modelhub.monitor.settings import MonitorSettings

    url = args.database_url or MonitorSettings().database_url
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "upgrade":
        asyncio.run(upgrade(url, args.revision))
    elif args.action == "downgrade":
        asyncio.run(downgrade(url, args.revision))
    else:
        revision = asyncio.run(current(url))
        print(f"{revision or 'none'} (head: {head_revision()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
