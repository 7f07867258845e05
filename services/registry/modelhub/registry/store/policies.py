"""Deployments and endpoints are both a named row holding a JSON spec, with version
references, an etag and a change event per write: `Policy` is the one set of operations
that serves the two tables."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.errors import AlreadyExistsError, NotFoundError
from modelhub.registry.resources import Deployment, Endpoint, EventType, Kind, VersionSelector
from modelhub.registry.store.base import Tx, etag_ok, stale
from modelhub.registry.store.reads import model_pk
from modelhub.registry.store.records import PolicyRow
from modelhub.registry.store.refs import save_refs

R = TypeVar("R", Deployment, Endpoint)


@dataclass(frozen=True)
class Policy(Generic[R]):
    """A table of named policy resources (deployments or endpoints)."""

    kind: Kind
    what: str  # "deployment" / "endpoint": messages, resource names, version_refs.owner_kind
    table: sa.Table
    # The resource of a row, its selectors resolved as they are now.
    to_resource: Callable[[AsyncConnection, PolicyRow], Awaitable[R]]

    def resource_name(self, name: str) -> str:
        return f"{self.what}s/{name}"

    async def row(self, conn: AsyncConnection, name: str, lock: bool = False) -> PolicyRow:
        query = sa.select(self.table).where(self.table.c.name == name)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise NotFoundError(
                f"{self.what} {name!r} not found",
                metadata={"resource": self.resource_name(name)},
            )
        return PolicyRow.of(row)

    async def load(self, conn: AsyncConnection, name: str) -> R:
        return await self.to_resource(conn, await self.row(conn, name))

    async def page(
        self, conn: AsyncConnection, limit: int, after: str | None, model: str = ""
    ) -> tuple[list[R], bool]:
        """A page of resources by name after `after`, and whether more follow; `model`
        keeps those of one model (deployments)."""
        table = self.table
        query = sa.select(table).order_by(table.c.name).limit(limit + 1)
        if after:
            query = query.where(table.c.name > after)
        if model:
            query = query.where(table.c.model_pk == ((await model_pk(conn, model)) or -1))
        rows = [PolicyRow.of(row) for row in await conn.execute(query)]
        items = [await self.to_resource(conn, row) for row in rows[:limit]]
        return items, len(rows) > limit

    async def check_absent(self, conn: AsyncConnection, name: str) -> None:
        """AlreadyExistsError when `name` is taken."""
        exists = await conn.scalar(sa.select(self.table.c.id).where(self.table.c.name == name))
        if exists is not None:
            raise AlreadyExistsError(
                f"{self.what} {name!r} already exists",
                metadata={"resource": self.resource_name(name)},
            )

    async def lock_current(self, tx: Tx, name: str, etag: str) -> tuple[R, int]:
        """Lock the row, check the etag; (current resource, primary key)."""
        row = await self.row(tx.conn, name, lock=True)
        if not etag_ok(etag, row.mod_revision):
            raise stale(f"{self.what} {name!r}", etag, row.mod_revision)
        return await self.to_resource(tx.conn, row), row.id

    async def store(
        self,
        tx: Tx,
        name: str,
        values: dict[str, object],
        refs: list[tuple[int, VersionSelector]],
        pk: int | None,
    ) -> R:
        """Insert (pk None) or update the row, its refs, and record the PUT event."""
        table = self.table
        revision = tx.next_revision()
        values = {**values, "update_time": tx.now, "mod_revision": revision}
        if pk is None:
            await tx.conn.execute(
                table.insert().values(
                    name=name, uid=str(uuid.uuid4()), create_time=tx.now, **values
                )
            )
        else:
            await tx.conn.execute(sa.update(table).where(table.c.id == pk).values(**values))
        await save_refs(tx, self.what, name, refs)
        resource = await self.load(tx.conn, name)
        await tx.record(self.kind, EventType.PUT, self.resource_name(name), resource, revision)
        return resource

    async def delete(self, tx: Tx, name: str, etag: str) -> None:
        resource, pk = await self.lock_current(tx, name, etag)
        await save_refs(tx, self.what, name, [])
        await tx.conn.execute(sa.delete(self.table).where(self.table.c.id == pk))
        await tx.record(
            self.kind,
            EventType.DELETE,
            self.resource_name(name),
            resource,
            tx.next_revision(),
        )

    async def republish(self, tx: Tx, name: str) -> None:
        """A new revision and PUT event for `name`, whose selectors may resolve otherwise."""
        revision = tx.next_revision()
        await tx.conn.execute(
            sa.update(self.table).where(self.table.c.name == name).values(mod_revision=revision)
        )
        resource = await self.load(tx.conn, name)
        await tx.record(self.kind, EventType.PUT, self.resource_name(name), resource, revision)
