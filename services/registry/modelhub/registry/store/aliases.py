"""Aliases: names for a version of a model (`models/fraud@champion`)."""

from __future__ import annotations

import sqlalchemy as sa

from modelhub.common.db import shielded
from modelhub.common.errors import FailedPreconditionError, InUseError, NotFoundError
from modelhub.registry import names
from modelhub.registry.resources import Alias, EventType, Kind, VersionStatus
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import StoreBase, Tx
from modelhub.registry.store.dependents import touch_dependents
from modelhub.registry.store.reads import aliases_of, model_row, put_version_event, resolve_alias
from modelhub.registry.store.refs import users


async def _check_aliasable(tx: Tx, model: str, model_pk: int, version: int) -> None:
    status = await tx.conn.scalar(
        sa.select(t.model_versions.c.status).where(
            t.model_versions.c.model_pk == model_pk, t.model_versions.c.version == version
        )
    )
    if status is None:
        raise NotFoundError(
            f"model {model!r} has no version {version}",
            metadata={"resource": names.version_name(model, version)},
        )
    if status != VersionStatus.READY.value:
        raise FailedPreconditionError(
            f"{names.version_name(model, version)} is {status}: only READY versions can be aliased"
        )


async def point_alias(tx: Tx, model: str, model_pk: int, alias: str, version: int) -> Alias:
    """Point `alias` at a READY version; publishes the alias and the versions whose alias
    lists changed (not the dependents: see `touch_dependents`)."""
    await _check_aliasable(tx, model, model_pk, version)
    previous = await resolve_alias(tx.conn, model_pk, alias)
    revision = tx.next_revision()
    if previous is None:
        await tx.conn.execute(
            t.aliases.insert().values(
                model_pk=model_pk,
                alias=alias,
                version=version,
                update_time=tx.now,
                mod_revision=revision,
            )
        )
    else:
        await tx.conn.execute(
            sa.update(t.aliases)
            .where(t.aliases.c.model_pk == model_pk, t.aliases.c.alias == alias)
            .values(version=version, update_time=tx.now, mod_revision=revision)
        )
    resource = Alias(model=model, alias=alias, version=version, update_time=tx.now)
    await tx.record(Kind.ALIAS, EventType.PUT, names.alias_name(model, alias), resource, revision)
    # The versions' alias lists changed: the new target first, then the old one.
    for number in [version] + ([previous] if previous not in (None, version) else []):
        assert number is not None
        await put_version_event(tx, model, number, tx.next_revision())
    return resource


class AliasStore(StoreBase):
    @shielded
    async def set_alias(self, model: str, alias: str, version: int) -> Alias:
        async def body(tx: Tx) -> Alias:
            row = await model_row(tx.conn, model, lock=True)
            resource = await point_alias(tx, model, row.id, alias, version)
            await touch_dependents(tx, row.id)
            return resource

        return await self._write(body)

    @shielded
    async def delete_alias(self, model: str, alias: str) -> None:
        async def body(tx: Tx) -> None:
            row = await model_row(tx.conn, model, lock=True)
            version = await resolve_alias(tx.conn, row.id, alias)
            if version is None:
                raise NotFoundError(
                    f"model {model!r} has no alias {alias!r}",
                    metadata={"resource": names.alias_name(model, alias)},
                )
            used_by = await users(tx.conn, row.id, alias=alias)
            if used_by:
                raise InUseError(
                    f"alias {alias!r} of model {model!r} is used by {', '.join(used_by)}",
                    metadata={"used_by": ",".join(used_by)},
                )
            await tx.conn.execute(
                sa.delete(t.aliases).where(
                    t.aliases.c.model_pk == row.id, t.aliases.c.alias == alias
                )
            )
            resource = Alias(model=model, alias=alias, version=version, update_time=tx.now)
            await tx.record(
                Kind.ALIAS,
                EventType.DELETE,
                names.alias_name(model, alias),
                resource,
                tx.next_revision(),
            )
            await put_version_event(tx, model, version, tx.next_revision())

        await self._write(body)

    @shielded
    async def list_aliases(self, model: str) -> list[Alias]:
        async with self.db.read() as conn:
            row = await model_row(conn, model)
            return await aliases_of(conn, row.id)
