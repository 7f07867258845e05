"""The registry's database handle: engine, pragmas, transactions and the schema check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from modelhub.common.errors import SchemaOutdatedError, UnavailableError

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """Transactions over one engine.

    Writes on SQLite are serialized in-process: SQLite allows one writer, and a deferred
    transaction that reads first and writes later can fail to upgrade its lock when another
    writer got in between. PostgreSQL needs no such lock: every write transaction locks the
    revision row first (see the store), which orders writers there.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._running: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(create_engine(url))

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

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction: committed on success, rolled back on any error."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            try:
                async with self.engine.begin() as conn:
                    yield conn
            except (OperationalError, DBAPIError) as exc:
                if exc.connection_invalidated or isinstance(exc, OperationalError):
                    raise UnavailableError(f"database unavailable: {exc.orig}") from exc
                raise

    @contextlib.asynccontextmanager
    async def read(self, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read transaction; `snapshot` makes every statement see one consistent state."""
        try:
            async with self.engine.connect() as conn:
                if snapshot and not self.is_sqlite:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise UnavailableError(f"database unavailable: {exc.orig}") from exc


MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def current_schema_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(conn: sa.Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def check_schema(engine: AsyncEngine, upgrade_command: str) -> None:
    """Refuse to run on a database whose schema is not the code's newest."""
    current = await current_schema_revision(engine)
    head = alembic_head()
    if current != head:
        state = "has no registry schema" if current is None else f"is at revision {current}"
        raise SchemaOutdatedError(
            f"the registry database {state}, the code needs {head}: run `{upgrade_command}` first",
            metadata={"current": current or "", "required": head},
        )
