"""Model versions: numbered, immutable artifacts with their schema, lineage and metadata."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa

from modelhub.common.db import shielded
from modelhub.common.errors import InUseError, NotFoundError
from modelhub.registry import names
from modelhub.registry.jsoncodec import to_json
from modelhub.registry.names import VersionRef
from modelhub.registry.resources import EventType, Kind, Model, ModelVersion, VersionStatus
from modelhub.registry.store import tables as t
from modelhub.registry.store.aliases import point_alias
from modelhub.registry.store.base import StoreBase, Tx, etag_ok, stale
from modelhub.registry.store.dependents import touch_dependents
from modelhub.registry.store.models import insert_model
from modelhub.registry.store.reads import (
    aliases_of,
    load_version,
    model_row,
    put_model_event,
    put_version_event,
    resolve_alias,
    to_versions,
    version_row,
)
from modelhub.registry.store.records import VersionRow
from modelhub.registry.store.refs import users


async def _next_number(tx: Tx, draft: ModelVersion, create_model: bool) -> tuple[int, int]:
    """(model pk, new version number), creating the model when asked to."""
    found = await tx.conn.scalar(sa.select(t.models.c.id).where(t.models.c.name == draft.model))
    if found is None:
        if not create_model:
            raise NotFoundError(
                f"model {draft.model!r} not found: create it first or set "
                "create_model in the upload metadata",
                metadata={"resource": names.model_name(draft.model)},
            )
        await insert_model(tx, Model(id=draft.model, uid=""))
    allocated = (
        await tx.conn.execute(
            sa.update(t.models)
            .where(t.models.c.name == draft.model)
            .values(last_version=t.models.c.last_version + 1)
            .returning(t.models.c.last_version, t.models.c.id)
        )
    ).one()
    return int(allocated.id), int(allocated.last_version)


async def _insert_version(tx: Tx, draft: ModelVersion, model_pk: int, number: int) -> None:
    revision = tx.next_revision()
    version_pk = await tx.conn.scalar(
        t.model_versions.insert()
        .values(
            model_pk=model_pk,
            version=number,
            uid=str(uuid.uuid4()),
            status=VersionStatus.READY.value,
            description=draft.description,
            author=draft.author,
            source=to_json(draft.source),
            metadata=draft.metadata,
            sha256=draft.artifact.sha256,
            size_bytes=draft.artifact.size_bytes,
            format=draft.artifact.format,
            schema=to_json(draft.schema),
            data_profile=draft.data_profile,
            derivation=to_json(draft.derivation) if draft.derivation else None,
            evaluation=draft.evaluation,
            create_time=tx.now,
            update_time=tx.now,
            mod_revision=revision,
        )
        .returning(t.model_versions.c.id)
    )
    if draft.tags:
        await tx.conn.execute(
            t.version_tags.insert(),
            [{"version_pk": version_pk, "tag": tag} for tag in draft.tags],
        )
    await put_version_event(tx, draft.model, number, revision)


async def _update_row(tx: Tx, row: VersionRow, updated: ModelVersion) -> int:
    """Store the mutable fields and tags of a version; its new revision."""
    revision = tx.next_revision()
    await tx.conn.execute(
        sa.update(t.model_versions)
        .where(t.model_versions.c.id == row.id)
        .values(
            status=updated.status.value,
            description=updated.description,
            author=updated.author,
            source=to_json(updated.source),
            metadata=updated.metadata,
            data_profile=updated.data_profile,
            update_time=tx.now,
            mod_revision=revision,
        )
    )
    await tx.conn.execute(sa.delete(t.version_tags).where(t.version_tags.c.version_pk == row.id))
    if updated.tags:
        await tx.conn.execute(
            t.version_tags.insert(),
            [{"version_pk": row.id, "tag": x} for x in updated.tags],
        )
    return revision


async def _check_unused(tx: Tx, model: str, model_pk: int, version: int, doing: str) -> None:
    used_by = await users(tx.conn, model_pk, version=version)
    if used_by:
        raise InUseError(
            f"{names.version_name(model, version)} is used by {', '.join(used_by)}: "
            f"route them elsewhere before {doing} it",
            metadata={"used_by": ",".join(used_by)},
        )


async def _delete_aliases_of(tx: Tx, model: str, model_pk: int, version: int) -> None:
    for alias in await aliases_of(tx.conn, model_pk):
        if alias.version != version:
            continue
        await tx.conn.execute(
            sa.delete(t.aliases).where(
                t.aliases.c.model_pk == model_pk, t.aliases.c.alias == alias.alias
            )
        )
        await tx.record(
            Kind.ALIAS,
            EventType.DELETE,
            names.alias_name(model, alias.alias),
            alias,
            tx.next_revision(),
        )


class VersionStore(StoreBase):
    @shielded
    async def add_version(
        self, draft: ModelVersion, create_model: bool, aliases: list[str], claim: str = ""
    ) -> ModelVersion:
        """Insert a version (number assigned here), optionally creating its model and
        pointing aliases at it, in one transaction that also releases the upload's blob
        `claim`. `draft.version` is ignored."""

        async def body(tx: Tx) -> ModelVersion:
            if claim:
                await tx.conn.execute(sa.delete(t.blob_claims).where(t.blob_claims.c.id == claim))
            model_pk, number = await _next_number(tx, draft, create_model)
            await _insert_version(tx, draft, model_pk, number)
            await tx.conn.execute(
                sa.update(t.models)
                .where(t.models.c.id == model_pk)
                .values(update_time=tx.now, mod_revision=tx.next_revision())
            )
            await put_model_event(tx, draft.model, tx.revision)
            for alias in aliases:
                await point_alias(tx, draft.model, model_pk, alias, number)
            await touch_dependents(tx, model_pk)
            return await load_version(tx.conn, VersionRef(draft.model, version=number))

        return await self._write(body)

    @shielded
    async def get_version(self, ref: VersionRef, full: bool = True) -> ModelVersion:
        async with self.db.read() as conn:
            return await load_version(conn, ref, full)

    @shielded
    async def list_versions(
        self,
        model: str,
        limit: int,
        before: int | None,
        status: VersionStatus | None,
        alias: str,
        tag: str,
        full: bool,
    ) -> tuple[list[ModelVersion], bool]:
        c = t.model_versions.c
        async with self.db.read() as conn:
            model_pk = (await model_row(conn, model)).id
            query = (
                sa.select(t.model_versions)
                .where(c.model_pk == model_pk)
                .order_by(c.version.desc())
                .limit(limit + 1)
            )
            if before is not None:
                query = query.where(c.version < before)
            if status is not None:
                query = query.where(c.status == status.value)
            if tag:
                tagged = sa.select(t.version_tags.c.version_pk).where(t.version_tags.c.tag == tag)
                query = query.where(c.id.in_(tagged))
            if alias:
                number = await resolve_alias(conn, model_pk, alias)
                if number is None:
                    return [], False
                query = query.where(c.version == number)
            rows = [VersionRow.of(row) for row in await conn.execute(query)]
            more = len(rows) > limit
            return await to_versions(conn, model, model_pk, rows[:limit], full), more

    @shielded
    async def update_version(
        self,
        model: str,
        version: int,
        mutate: Callable[[ModelVersion], ModelVersion],
        etag: str,
    ) -> ModelVersion:
        async def body(tx: Tx) -> ModelVersion:
            owner, row = await version_row(tx.conn, VersionRef(model, version=version))
            if not etag_ok(etag, row.mod_revision):
                raise stale(names.version_name(model, version), etag, row.mod_revision)
            current = (await to_versions(tx.conn, model, owner.id, [row], True))[0]
            updated = mutate(current)
            changed = updated.status != current.status
            if changed and updated.status == VersionStatus.ARCHIVED:
                await _check_unused(tx, model, owner.id, version, "archiving")
            revision = await _update_row(tx, row, updated)
            await put_version_event(tx, model, version, revision)
            if changed:
                await touch_dependents(tx, owner.id)
            return await load_version(tx.conn, VersionRef(model, version=version))

        return await self._write(body)

    @shielded
    async def delete_version(self, model: str, version: int, etag: str) -> str:
        """Delete a version and the aliases pointing at it; returns its artifact digest."""

        async def body(tx: Tx) -> str:
            owner, row = await version_row(tx.conn, VersionRef(model, version=version))
            if not etag_ok(etag, row.mod_revision):
                raise stale(names.version_name(model, version), etag, row.mod_revision)
            await _check_unused(tx, model, owner.id, version, "deleting")
            resource = (await to_versions(tx.conn, model, owner.id, [row], False))[0]
            await _delete_aliases_of(tx, model, owner.id, version)
            await tx.conn.execute(
                sa.delete(t.model_versions).where(t.model_versions.c.id == row.id)
            )
            await tx.record(
                Kind.MODEL_VERSION,
                EventType.DELETE,
                names.version_name(model, version),
                resource,
                tx.next_revision(),
            )
            await touch_dependents(tx, owner.id)
            return row.sha256

        return await self._write(body)

    @shielded
    async def referenced_digests(self) -> set[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(t.model_versions.c.sha256).distinct())
            return {str(r.sha256) for r in rows}
