"""Registry schema migrations (a deployment step, run by `make migrate`):

    python -m modelhub.registry.migrate upgrade [REVISION]     # default: head
    python -m modelhub.registry.migrate downgrade REVISION     # e.g. base
    python -m modelhub.registry.migrate current|check          # check: exit 1 unless at head

The database URL is MODELHUB_REGISTRY_DATABASE_URL (see RegistrySettings) unless
`--database-url` (or `--url`) is given. The registry refuses to start until the schema is at
head. The command line is `modelhub.common.db.migrate_main`, the same for every service.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.common.db import Migrations, migrate_main
from modelhub.registry.settings import RegistrySettings

MIGRATIONS = Migrations("registry", Path(__file__).resolve().parent / "migrations")


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the schema (blocking, with an event loop of its own: from inside a running
    loop, call it in a worker thread, or await `MIGRATIONS.upgrade`)."""
    asyncio.run(MIGRATIONS.upgrade(url, revision))


def downgrade(url: str, revision: str) -> None:
    """Downgrade the schema (blocking, like `upgrade`)."""
    asyncio.run(MIGRATIONS.downgrade(url, revision))


async def check_schema(engine: AsyncEngine) -> None:
    """SchemaOutdatedError unless the registry database is at the migrations' head."""
    await MIGRATIONS.check(engine)


def main(argv: list[str] | None = None) -> int:
    return migrate_main(MIGRATIONS, lambda: RegistrySettings().database_url, argv)


if __name__ == "__main__":
    sys.exit(main())
