"""Write transactions of the registry store and the helpers every part of it shares.

Every write is one transaction that also appends its changes to the change feed behind
Watch. Revision order equals commit order: a write transaction first locks the single
`registry_state` row (SELECT … FOR UPDATE on PostgreSQL; SQLite writers are serialized by
`Database`), takes the next revision numbers from it, and stores the new counter before it
commits. Version numbers come from `models.last_version`, incremented under the model's row
lock and rolled back with a failed transaction: no gaps, no duplicates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.db import Database
from modelhub.common.errors import ConflictError, InternalError
from modelhub.registry.jsoncodec import from_json, to_json
from modelhub.registry.resources import EventType, Kind, Resource, WatchEvent
from modelhub.registry.store import tables as t

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def etag_ok(etag: str, current: int) -> bool:
    return not etag or etag == str(current)


def stale(what: str, etag: str, current: int) -> ConflictError:
    return ConflictError(
        f"{what} was changed by someone else (etag {etag!r}, current {current}): "
        "read it again and retry",
        metadata={"current_etag": str(current)},
    )


def decode(tp: type[T], data: object) -> T:
    """A `tp` from its stored JSON (`to_json` output)."""
    value = from_json(tp, data)
    if not isinstance(value, tp):
        raise InternalError(f"a stored {tp.__name__} cannot be read back: {data!r:.200}")
    return value


@dataclass
class Tx:
    """A write transaction's revision counter and the changes it records."""

    conn: AsyncConnection
    revision: int
    compacted: int
    now: datetime = field(default_factory=utcnow)
    events: list[WatchEvent] = field(default_factory=list)

    @classmethod
    async def begin(cls, conn: AsyncConnection) -> Tx:
        """Lock the revision row: writers queue here, in commit order."""
        state = t.registry_state.c
        row = (
            await conn.execute(
                sa.select(state.revision, state.compacted_revision)
                .where(state.id == 1)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise InternalError("registry_state row is missing: was the database migrated?")
        return cls(conn=conn, revision=int(row.revision), compacted=int(row.compacted_revision))

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision

    async def record(
        self, kind: Kind, type_: EventType, name: str, resource: Resource, revision: int
    ) -> None:
        """Append a change to the feed (and to the events of this transaction)."""
        self.events.append(WatchEvent(type_, revision, kind, name, resource))
        await self.conn.execute(
            t.changes.insert().values(
                revision=revision,
                kind=kind.value,
                # By name ("PUT"...): what the feed has always stored.
                type=type_.name,
                name=name,
                payload=to_json(resource),
                create_time=self.now,
            )
        )

    async def finish(self, history: int) -> None:
        """Store the revision counter; drop changes older than `history` revisions."""
        values: dict[str, int] = {"revision": self.revision}
        floor = self.revision - history
        # Compact in steps of a tenth of the history to keep the delete cheap and rare.
        if floor - self.compacted > max(history // 10, 1):
            await self.conn.execute(sa.delete(t.changes).where(t.changes.c.revision <= floor))
            values["compacted_revision"] = floor
        await self.conn.execute(
            sa.update(t.registry_state).where(t.registry_state.c.id == 1).values(**values)
        )


class StoreBase:
    """The database, the change history kept for Watch, and the write transaction runner
    that the parts of `RegistryStore` share."""

    def __init__(
        self,
        db: Database,
        history: int = 100_000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.history = history
        self._on_commit = on_commit

    async def _write(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `body` in a write transaction; `on_commit(revision)` after a commit that
        recorded changes."""
        async with self.db.write() as conn:
            tx = await Tx.begin(conn)
            result = await body(tx)
            await tx.finish(self.history)
        if tx.events and self._on_commit is not None:
            self._on_commit(tx.revision)
        return result
