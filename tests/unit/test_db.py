"""modelhub.common.db and modelhub.common.paging: transactions translate database errors,
shielded operations finish when their caller is cancelled, the typed page-token decoders
refuse positions of the wrong type, and the one migrate command line behaves the same for
the registry and the monitor (both option spellings, in either position)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelhub.common import paging
from modelhub.common.db import Database, Migrations, redacted
from modelhub.common.errors import AlreadyExistsError, InvalidArgumentError, UnavailableError
from modelhub.monitor import migrate as monitor_migrate
from modelhub.registry import migrate as registry_migrate

_items = sa.Table("items", sa.MetaData(), sa.Column("name", sa.String(10), primary_key=True))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'x.db'}", "test")
    async with database.engine.begin() as conn:
        await conn.run_sync(_items.metadata.create_all)
    try:
        yield database
    finally:
        await database.close()


async def test_sqlite_gets_wal_and_foreign_keys(db: Database) -> None:
    async with db.read() as conn:
        assert await conn.scalar(sa.text("PRAGMA journal_mode")) == "wal"
        assert await conn.scalar(sa.text("PRAGMA foreign_keys")) == 1


async def test_a_constraint_violation_is_already_exists_and_rolls_back(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(_items.insert().values(name="a"))
    with pytest.raises(AlreadyExistsError, match="conflicting write"):
        async with db.write() as conn:
            await conn.execute(_items.insert().values(name="b"))
            await conn.execute(_items.insert().values(name="a"))
    async with db.read() as conn:
        assert list(await conn.scalars(sa.select(_items.c.name))) == ["a"]


async def test_an_orm_session_commits_with_its_transaction(db: Database) -> None:
    async with db.session() as session:
        await session.execute(_items.insert().values(name="s"))
    async with db.session(write=False) as session:
        assert list(await session.scalars(sa.select(_items.c.name))) == ["s"]


async def test_an_unreachable_database_is_unavailable_with_the_service_name() -> None:
    db = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none", "monitor")
    try:
        with pytest.raises(UnavailableError, match="monitor database unavailable"):
            async with db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await db.close()


async def test_a_shielded_operation_finishes_when_its_caller_is_cancelled(db: Database) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def insert() -> None:
        async with db.write() as conn:
            started.set()
            await release.wait()
            await conn.execute(_items.insert().values(name="late"))

    caller = asyncio.create_task(db.shielded(insert()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    await db.close()  # waits for the operation
    reopened = Database(db.engine)
    async with reopened.read() as conn:
        assert list(await conn.scalars(sa.select(_items.c.name))) == ["late"]


def test_redacted_hides_the_password() -> None:
    assert redacted("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert "secret" not in redacted("not a url secret")


# ---------------------------------------------------------------------------- page tokens


def test_typed_page_tokens_refuse_positions_of_another_type() -> None:
    filters = {"tag": "a"}
    assert paging.decode_str(paging.encode_token("m-3", filters), filters) == "m-3"
    assert paging.decode_int(paging.encode_token(7, filters), filters) == 7
    assert paging.decode_ints(paging.encode_token([5, 6], filters), filters, 2) == (5, 6)
    for decode in (paging.decode_str, paging.decode_int):
        assert decode("", filters) is None
    # A client can build a token with the right fingerprint and any position.
    forged: list[tuple[Callable[[str], object], object]] = [
        (lambda token: paging.decode_str(token, filters), 3),
        (lambda token: paging.decode_str(token, filters), {"x": 1}),
        (lambda token: paging.decode_int(token, filters), "3"),
        (lambda token: paging.decode_int(token, filters), True),
        (lambda token: paging.decode_ints(token, filters, 2), [1]),
        (lambda token: paging.decode_ints(token, filters, 2), [1, "2"]),
        (lambda token: paging.decode_ints(token, filters, 2), 12),
    ]
    for decode_with, position in forged:
        with pytest.raises(InvalidArgumentError, match="page_token") as info:
            decode_with(paging.encode_token(position, filters))
        assert info.value.violations[0].field == "page_token"


# ------------------------------------------------------------------- migrate command line

SERVICES = {"registry": registry_migrate, "monitor": monitor_migrate}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_one_migrate_command_line_for_every_service(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = SERVICES[service].main
    migrations: Migrations = SERVICES[service].MIGRATIONS
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / f'{service}.db'}"
    head = migrations.head()

    # `check` on an empty database: behind, exit 1.
    assert main(["check", "--database-url", url]) == 1
    assert f"current none, head {head}" in capsys.readouterr().out
    # The e2e test's spellings: option after the action, or before it; `--url` = same.
    assert main(["upgrade", "--url", url]) == 0
    assert main(["--database-url", url, "check"]) == 0
    assert f"{service} database" in capsys.readouterr().out
    assert main(["--url", url, "current"]) == 0
    assert f"current {head}, head {head}" in capsys.readouterr().out
    assert main(["downgrade", "base", "--database-url", url]) == 0
    assert main(["check", "--url", url]) == 1
    capsys.readouterr()

    # Usage errors exit 2 and say what is missing.
    with pytest.raises(SystemExit) as exit_info:
        main(["downgrade", "--database-url", url])
    assert exit_info.value.code == 2
    assert "downgrade needs a REVISION" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["current", "head", "--database-url", url])
    assert exit_info.value.code == 2

    # A database that cannot be reached: a one-line error without the password, exit 1.
    assert main(["current", "--url", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert f"python -m modelhub.{service}.migrate current failed" in err
    assert "hunter2" not in err and "Traceback" not in err
