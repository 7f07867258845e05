"""Registry schema migrations: `python -m modelhub.registry.migrate upgrade|current|check`.

The database URL comes from MODELHUB_REGISTRY_DATABASE_URL (see RegistrySettings), or
`--url`. `make migrate` runs `upgrade`; the registry refuses to start until it has.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from alembic import command
from alembic.config import Config

from modelhub.registry.settings import RegistrySettings
from modelhub.registry.store.db import (
    MIGRATIONS_DIR,
    alembic_head,
    create_engine,
    current_schema_revision,
)

UPGRADE_COMMAND = "make migrate"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the schema (blocking; call from a thread inside an event loop)."""
    create_engine(url)  # creates the SQLite file's directory when needed
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def _current(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await current_schema_revision(engine)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.registry.migrate")
    parser.add_argument("action", choices=["upgrade", "downgrade", "current", "check"])
    parser.add_argument("revision", nargs="?", default="head")
    parser.add_argument("--url", default=None, help="database URL (default: settings)")
    args = parser.parse_args(argv)
    url = args.url or RegistrySettings().database_url
    if args.action == "upgrade":
        upgrade(url, args.revision)
        print(f"registry schema at {alembic_head()} ({url})")
    elif args.action == "downgrade":
        downgrade(url, args.revision)
    else:
        current = asyncio.run(_current(url))
        print(f"current: {current}  head: {alembic_head()}")
        if args.action == "check" and current != alembic_head():
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
