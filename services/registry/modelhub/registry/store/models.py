"""Models: named collections of versions, with tags and labels."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa

from modelhub.common.db import shielded
from modelhub.common.errors import AlreadyExistsError, InUseError
from modelhub.registry import names
from modelhub.registry.resources import EventType, Kind, Model
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import StoreBase, Tx, etag_ok, stale
from modelhub.registry.store.reads import (
    aliases_of,
    load_model,
    model_row,
    model_tags,
    put_model_event,
    to_model,
    versions_of,
)
from modelhub.registry.store.records import ModelRow
from modelhub.registry.store.refs import users


async def insert_model(tx: Tx, model: Model) -> int:
    """Insert a new model (AlreadyExistsError when the name is taken); its primary key."""
    exists = await tx.conn.scalar(sa.select(t.models.c.id).where(t.models.c.name == model.id))
    if exists is not None:
        raise AlreadyExistsError(
            f"model {model.id!r} already exists",
            metadata={"resource": names.model_name(model.id)},
        )
    revision = tx.next_revision()
    pk = await tx.conn.scalar(
        t.models.insert()
        .values(
            name=model.id,
            uid=str(uuid.uuid4()),
            description=model.description,
            labels=model.labels,
            last_version=0,
            create_time=tx.now,
            update_time=tx.now,
            mod_revision=revision,
        )
        .returning(t.models.c.id)
    )
    if model.tags:
        await tx.conn.execute(
            t.model_tags.insert(), [{"model_pk": pk, "tag": tag} for tag in model.tags]
        )
    await put_model_event(tx, model.id, revision)
    assert pk is not None
    return int(pk)


def _name_prefix(prefix: str) -> sa.ColumnElement[bool]:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return t.models.c.name.like(escaped + "%", escape="\\")


async def _delete_contents(tx: Tx, model: str, row: ModelRow) -> list[str]:
    """Delete a model's aliases and versions (with their events); the versions' digests."""
    for alias in await aliases_of(tx.conn, row.id):
        await tx.record(
            Kind.ALIAS,
            EventType.DELETE,
            names.alias_name(model, alias.alias),
            alias,
            tx.next_revision(),
        )
    digests: list[str] = []
    for version in await versions_of(tx.conn, row.id):
        digests.append(version.artifact.sha256)
        await tx.record(
            Kind.MODEL_VERSION,
            EventType.DELETE,
            names.version_name(model, version.version),
            version,
            tx.next_revision(),
        )
    await tx.conn.execute(sa.delete(t.aliases).where(t.aliases.c.model_pk == row.id))
    await tx.conn.execute(sa.delete(t.model_versions).where(t.model_versions.c.model_pk == row.id))
    return digests


class ModelStore(StoreBase):
    @shielded
    async def create_model(self, model: Model) -> Model:
        async def body(tx: Tx) -> Model:
            await insert_model(tx, model)
            return await load_model(tx.conn, model.id)

        return await self._write(body)

    @shielded
    async def get_model(self, model: str) -> Model:
        async with self.db.read() as conn:
            return await load_model(conn, model)

    @shielded
    async def list_models(
        self,
        limit: int,
        after: str | None,
        name_prefix: str,
        tag: str,
        label: tuple[str, str] | None = None,
    ) -> tuple[list[Model], bool]:
        """A page of models after `after` by name; `label` is a (key, value) to match."""
        query = sa.select(t.models).order_by(t.models.c.name).limit(limit + 1)
        if after:
            query = query.where(t.models.c.name > after)
        if name_prefix:
            query = query.where(_name_prefix(name_prefix))
        if tag:
            query = query.where(
                t.models.c.id.in_(
                    sa.select(t.model_tags.c.model_pk).where(t.model_tags.c.tag == tag)
                )
            )
        if label is not None:
            # Labels are a JSON column (no labels table): matched per row while walking the
            # name index, so a page still stops after limit + 1 matches.
            query = query.where(t.models.c.labels[label[0]].as_string() == label[1])
        async with self.db.read() as conn:
            rows = [ModelRow.of(row) for row in await conn.execute(query)]
            more = len(rows) > limit
            rows = rows[:limit]
            tags = await model_tags(conn, [r.id for r in rows])
        return [to_model(r, tags[r.id]) for r in rows], more

    @shielded
    async def update_model(self, model: str, mutate: Callable[[Model], Model], etag: str) -> Model:
        async def body(tx: Tx) -> Model:
            row = await model_row(tx.conn, model, lock=True)
            if not etag_ok(etag, row.mod_revision):
                raise stale(f"model {model!r}", etag, row.mod_revision)
            updated = mutate(to_model(row, (await model_tags(tx.conn, [row.id]))[row.id]))
            revision = tx.next_revision()
            await tx.conn.execute(
                sa.update(t.models)
                .where(t.models.c.id == row.id)
                .values(
                    description=updated.description,
                    labels=updated.labels,
                    update_time=tx.now,
                    mod_revision=revision,
                )
            )
            await tx.conn.execute(sa.delete(t.model_tags).where(t.model_tags.c.model_pk == row.id))
            if updated.tags:
                await tx.conn.execute(
                    t.model_tags.insert(), [{"model_pk": row.id, "tag": x} for x in updated.tags]
                )
            return await put_model_event(tx, model, revision)

        return await self._write(body)

    @shielded
    async def delete_model(self, model: str, etag: str) -> list[str]:
        """Delete a model with its versions and aliases; returns its artifact digests."""

        async def body(tx: Tx) -> list[str]:
            row = await model_row(tx.conn, model, lock=True)
            if not etag_ok(etag, row.mod_revision):
                raise stale(f"model {model!r}", etag, row.mod_revision)
            used_by = await users(tx.conn, row.id)
            if used_by:
                raise InUseError(
                    f"model {model!r} is used by {', '.join(used_by)}: remove it from them first",
                    metadata={"used_by": ",".join(used_by)},
                )
            resource = await load_model(tx.conn, model)
            digests = await _delete_contents(tx, model, row)
            await tx.conn.execute(sa.delete(t.models).where(t.models.c.id == row.id))
            await tx.record(
                Kind.MODEL,
                EventType.DELETE,
                names.model_name(model),
                resource,
                tx.next_revision(),
            )
            return digests

        return await self._write(body)
