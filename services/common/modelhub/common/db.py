"""Database plumbing of the services that keep state (registry, monitor).

- `create_engine`: an async SQLAlchemy engine for a URL (SQLite through aiosqlite with WAL,
  foreign keys and a busy timeout; PostgreSQL through psycopg with a checked pool).
- `Database`: transactions over one engine (`write`, `read`, `session`), database errors
  translated into domain errors, operations finished even when their caller is cancelled.
- `Migrations`: one service's Alembic migrations: upgrade/downgrade, the revision a
  database is at, and the schema check that refuses to serve an older schema.
- `run_env`: the body of each service's `migrations/env.py`.
- `migrate_main`: the command line `python -m modelhub.<service>.migrate` of every service.

Page tokens are `modelhub.common.paging`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from modelhub.common.errors import AlreadyExistsError, SchemaOutdatedError, UnavailableError

T = TypeVar("T")
P = ParamSpec("P")

# ---------------------------------------------------------------------------- engines


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`. SQLite: the file's directory is created when missing, and
    every connection gets WAL, foreign keys and a busy timeout. Others (PostgreSQL): a pool
    of 10 (+10 overflow) whose connections are checked before use."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if sqlite:
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_async_engine(url, **kwargs)
    if sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def redacted(url: str) -> str:
    """`url` without its password (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<unparsable database URL>"


# ----------------------------------------------------------------------- transactions


class Database:
    """Transactions over one engine.

    Writes on SQLite are serialized in-process: SQLite allows one writer, and a deferred
    transaction that reads first and writes later can fail to upgrade its lock when another
    writer got in between. PostgreSQL needs no such lock (a store that must order its
    writers there locks a row of its own first, as the registry's revision row).

    Errors: a constraint violation becomes AlreadyExistsError, a lost or unreachable
    database UnavailableError; anything else propagates unchanged.
    """

    def __init__(self, engine: AsyncEngine, name: str = "") -> None:
        self.engine = engine
        self.name = name
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._running: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_url(cls, url: str, name: str = "") -> Database:
        """`name` ("registry", "monitor") prefixes the messages of database errors."""
        return cls(create_engine(url), name)

    async def close(self) -> None:
        """Wait for operations still running (see `shielded`), then close every connection."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self.engine.dispose()

    async def shielded(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run a database operation to completion even if the caller is cancelled.

        A caller cancelled in the middle of a statement (a client hanging up, a deadline)
        would otherwise leave SQLAlchemy to tear the connection down from a cancelled task;
        finishing the short operation and returning the connection to the pool is cleaner,
        and `close` can wait for it.
        """
        task = asyncio.ensure_future(operation)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    def _unavailable(self, exc: DBAPIError) -> UnavailableError:
        what = f"{self.name} database" if self.name else "database"
        return UnavailableError(f"{what} unavailable: {exc.orig}")

    @contextlib.asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise AlreadyExistsError(f"conflicting write: {exc.orig}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise self._unavailable(exc) from exc
            raise

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction: committed on success, rolled back on any error."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._translated(), self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read transaction; `snapshot` makes every statement see one consistent state."""
        async with self._translated(), self.engine.connect() as conn:
            if snapshot and not self.is_sqlite:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn

    @contextlib.asynccontextmanager
    async def session(self, write: bool = True) -> AsyncIterator[AsyncSession]:
        """An ORM session inside a `write` (or `read`) transaction; what it holds is flushed
        before the transaction commits."""
        transaction = self.write() if write else self.read()
        async with transaction as conn:
            session = AsyncSession(bind=conn, expire_on_commit=False)
            try:
                yield session
                await session.flush()
            finally:
                await session.close()


class HasDatabase(Protocol):
    @property
    def db(self) -> Database: ...


S = TypeVar("S", bound=HasDatabase)


def shielded(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Decorate a store method to run through `self.db.shielded`."""

    @functools.wraps(method)
    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.db.shielded(method(self, *args, **kwargs))

    return run


# ------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migrations:
    """One service's Alembic migrations (no alembic.ini: everything is set here).

    `version_table` names the table Alembic keeps the revision in: services sharing one
    PostgreSQL database each need their own.
    """

    service: str  # "registry": messages, `python -m modelhub.registry.migrate`
    directory: Path  # the script location (env.py, versions/)
    version_table: str = "alembic_version"

    @property
    def upgrade_hint(self) -> str:
        """How an operator brings the database up to date (in SchemaOutdatedError)."""
        return (
            f"run `python -m modelhub.{self.service}.migrate upgrade` (`make migrate` in a "
            f"checkout) with the same MODELHUB_{self.service.upper()}_DATABASE_URL"
        )

    def config(self, url: str = "", connection: sa.Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.directory))
        if url:
            # ConfigParser interpolates '%': URL-encoded passwords must be escaped.
            config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        config.attributes["version_table"] = self.version_table
        if connection is not None:
            config.attributes["connection"] = connection
        return config

    def head(self) -> str:
        """The newest revision of the migrations shipped with this code."""
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        assert head is not None, f"the {self.service} ships at least one migration"
        return head

    def current(self, connection: sa.Connection) -> str | None:
        """The revision a database is at (None: never migrated); for `run_sync`."""
        context = MigrationContext.configure(connection, opts={"version_table": self.version_table})
        return context.get_current_revision()

    async def current_revision(self, engine: AsyncEngine) -> str | None:
        async with engine.connect() as conn:
            return await conn.run_sync(self.current)

    async def check(self, engine: AsyncEngine) -> None:
        """Raise SchemaOutdatedError unless the database is at the migrations' head
        (UnavailableError when it cannot be reached)."""
        try:
            current = await self.current_revision(engine)
        except OperationalError as exc:
            raise UnavailableError(f"{self.service} database unavailable: {exc.orig}") from exc
        head = self.head()
        if current == head:
            return
        if current is None:
            state = f"has no {self.service} schema (revision none)"
        else:
            state = f"is at revision {current}"
        raise SchemaOutdatedError(
            f"the {self.service} database {state}, this code needs {head}: {self.upgrade_hint}",
            metadata={"current": current or "", "required": head},
        )

    def _command(self, connection: sa.Connection, action: str, revision: str) -> None:
        config = self.config(connection=connection)
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    async def _run(self, url: str, action: str, revision: str) -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(self._command, action, revision)
        finally:
            await engine.dispose()

    async def upgrade(self, url: str, revision: str = "head") -> None:
        """Bring the database at `url` up to `revision`."""
        await self._run(url, "upgrade", revision)

    async def downgrade(self, url: str, revision: str) -> None:
        """Take the database at `url` down to `revision` ("base": no schema)."""
        await self._run(url, "downgrade", revision)

    async def current_at(self, url: str) -> str | None:
        """The revision of the database at `url`."""
        engine = create_engine(url)
        try:
            return await self.current_revision(engine)
        finally:
            await engine.dispose()


def run_env(metadata: sa.MetaData, version_table: str) -> None:
    """Run migrations from a service's `migrations/env.py`.

    `Migrations` passes an open connection in `config.attributes["connection"]`; the plain
    `alembic` command line works too (a URL in `sqlalchemy.url`, or `--sql` offline).
    SQLite runs in batch mode: it cannot ALTER most things, so a changed table is copied.
    """
    from alembic import context

    config = context.config
    options: dict[str, Any] = {
        "target_metadata": metadata,
        "version_table": version_table,
        "compare_type": True,
    }

    def migrate(connection: sa.Connection) -> None:
        context.configure(
            connection=connection, render_as_batch=connection.dialect.name == "sqlite", **options
        )
        with context.begin_transaction():
            context.run_migrations()

    async def with_engine(url: str) -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(migrate)
        finally:
            await engine.dispose()

    url = config.get_main_option("sqlalchemy.url") or ""
    if context.is_offline_mode():
        context.configure(
            url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **options
        )
        with context.begin_transaction():
            context.run_migrations()
    elif (connection := config.attributes.get("connection")) is not None:
        migrate(connection)
    else:
        asyncio.run(with_engine(url))


# ---------------------------------------------------------------------- command line

_ACTIONS = {
    "upgrade": "bring the schema up to REVISION (default: head, the newest)",
    "downgrade": "take the schema down to REVISION (required; `base` removes it)",
    "current": "print the database's revision and the code's head",
    "check": "like current, and exit with 1 unless the database is at head",
}


def _parser(migrations: Migrations) -> argparse.ArgumentParser:
    service = migrations.service
    actions = "\n".join(f"  {name:<10} {text}" for name, text in _ACTIONS.items())
    parser = argparse.ArgumentParser(
        prog=f"python -m modelhub.{service}.migrate",
        description=f"Schema migrations of the {service} database (Alembic). The {service} "
        "refuses to start until its database is at head; `make migrate` upgrades the "
        "databases of every service.",
        epilog=f"actions:\n{actions}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=list(_ACTIONS), help="what to do (see below)")
    parser.add_argument(
        "revision", nargs="?", default=None, help="target revision of upgrade/downgrade"
    )
    parser.add_argument(
        "--database-url",
        "--url",
        dest="database_url",
        default="",
        metavar="URL",
        help=f"SQLAlchemy URL of the database (default: MODELHUB_{service.upper()}"
        "_DATABASE_URL, or the service's default)",
    )
    return parser


async def _act(migrations: Migrations, action: str, url: str, revision: str) -> int:
    if action == "upgrade":
        await migrations.upgrade(url, revision)
    elif action == "downgrade":
        await migrations.downgrade(url, revision)
    current, head = await migrations.current_at(url), migrations.head()
    print(
        f"{migrations.service} database {redacted(url)}: current {current or 'none'}, head {head}"
    )
    return 1 if action == "check" and current != head else 0


def migrate_main(
    migrations: Migrations, default_url: Callable[[], str], argv: list[str] | None = None
) -> int:
    """`python -m modelhub.<service>.migrate upgrade|downgrade|current|check [REVISION]
    [--database-url URL]` (`--url` is the same option); the exit status: 0, 1 on failure or
    when `check` finds the schema behind, 2 on a usage error."""
    parser = _parser(migrations)
    args = parser.parse_args(argv)
    if args.action == "downgrade" and not args.revision:
        parser.error("downgrade needs a REVISION (e.g. base)")
    if args.action in ("current", "check") and args.revision:
        parser.error(f"{args.action} takes no REVISION")
    url = args.database_url or default_url()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_act(migrations, args.action, url, args.revision or "head"))
    except (SQLAlchemyError, CommandError, OSError) as exc:
        print(f"{parser.prog} {args.action} failed ({redacted(url)}): {exc}", file=sys.stderr)
        return 1
