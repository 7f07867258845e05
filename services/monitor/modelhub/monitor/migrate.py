"""Schema migrations of the monitor database (a deployment step, run by `make migrate`):

    python -m modelhub.monitor.migrate upgrade [REVISION]     # default: head
    python -m modelhub.monitor.migrate downgrade REVISION     # e.g. base
    python -m modelhub.monitor.migrate current|check          # check: exit 1 unless at head

The database URL is MODELHUB_MONITOR_DATABASE_URL (the service's own setting) unless
`--database-url` (or `--url`) is given. The service refuses to start on a schema that is not
at head. Alembic keeps the revision in its own table, `monitor_alembic_version`, so that the
monitor and the registry can share one PostgreSQL database. The command line is
`modelhub.common.db.migrate_main`, the same for every service.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.engine import Connection

from modelhub.common.db import Migrations, migrate_main

VERSION_TABLE = "monitor_alembic_version"
MIGRATIONS = Migrations("monitor", Path(__file__).resolve().parent / "migrations", VERSION_TABLE)


def head_revision() -> str:
    """The newest revision of the migrations shipped with this code."""
    return MIGRATIONS.head()


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at (None: never migrated); for `run_sync`."""
    return MIGRATIONS.current(connection)


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`."""
    await MIGRATIONS.upgrade(url, revision)


async def downgrade(url: str, revision: str) -> None:
    await MIGRATIONS.downgrade(url, revision)


async def current(url: str) -> str | None:
    return await MIGRATIONS.current_at(url)


def _default_url() -> str:
    from modelhub.monitor.settings import MonitorSettings

    return MonitorSettings().database_url


def main(argv: list[str] | None = None) -> int:
    return migrate_main(MIGRATIONS, _default_url, argv)


if __name__ == "__main__":
    sys.exit(main())
