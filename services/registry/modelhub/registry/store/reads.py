"""Reading models, versions and aliases inside a transaction: row lookups, the resources
built from them, and the PUT events that publish a changed model or version."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.errors import NotFoundError
from modelhub.registry import names
from modelhub.registry.names import LATEST, VersionRef
from modelhub.registry.resources import (
    Alias,
    Artifact,
    Derivation,
    EventType,
    Kind,
    Model,
    ModelSchema,
    ModelVersion,
    Source,
    VersionStatus,
)
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import Tx, decode, utc
from modelhub.registry.store.records import ModelRow, VersionRow

# ------------------------------------------------------------------------------ models


async def model_pk(conn: AsyncConnection, model: str) -> int | None:
    """The primary key of a model, None when there is no such model."""
    pk = await conn.scalar(sa.select(t.models.c.id).where(t.models.c.name == model))
    return None if pk is None else int(pk)


async def model_row(conn: AsyncConnection, model: str, lock: bool = False) -> ModelRow:
    """A model's row (locked for update with `lock`); NotFoundError when there is none."""
    query = sa.select(t.models).where(t.models.c.name == model)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise NotFoundError(
            f"model {model!r} not found", metadata={"resource": names.model_name(model)}
        )
    return ModelRow.of(row)


async def model_tags(conn: AsyncConnection, pks: Sequence[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {pk: [] for pk in pks}
    if pks:
        rows = await conn.execute(
            sa.select(t.model_tags.c.model_pk, t.model_tags.c.tag)
            .where(t.model_tags.c.model_pk.in_(pks))
            .order_by(t.model_tags.c.tag)
        )
        for row in rows:
            tags[row.model_pk].append(row.tag)
    return tags


def to_model(row: ModelRow, tags: list[str]) -> Model:
    return Model(
        id=row.name,
        uid=row.uid,
        description=row.description,
        tags=tags,
        labels=dict(row.labels),
        latest_version=row.last_version,
        create_time=row.create_time,
        update_time=row.update_time,
        etag=str(row.mod_revision),
    )


async def load_model(conn: AsyncConnection, model: str) -> Model:
    row = await model_row(conn, model)
    return to_model(row, (await model_tags(conn, [row.id]))[row.id])


async def put_model_event(tx: Tx, model: str, revision: int) -> Model:
    """Publish the model as it is now (a PUT event at `revision`)."""
    resource = await load_model(tx.conn, model)
    await tx.record(Kind.MODEL, EventType.PUT, names.model_name(model), resource, revision)
    return resource


# ----------------------------------------------------------------------------- aliases


async def aliases_of(conn: AsyncConnection, model_pk: int) -> list[Alias]:
    model = await conn.scalar(sa.select(t.models.c.name).where(t.models.c.id == model_pk))
    rows = await conn.execute(
        sa.select(t.aliases).where(t.aliases.c.model_pk == model_pk).order_by(t.aliases.c.alias)
    )
    return [
        Alias(
            model=str(model),
            alias=str(r.alias),
            version=int(r.version),
            update_time=utc(r.update_time),
        )
        for r in rows
    ]


async def resolve_alias(conn: AsyncConnection, model_pk: int, alias: str) -> int | None:
    """The version an alias points at ("latest": the newest READY one); None if none."""
    if alias == LATEST:
        number = await conn.scalar(
            sa.select(sa.func.max(t.model_versions.c.version)).where(
                t.model_versions.c.model_pk == model_pk,
                t.model_versions.c.status == VersionStatus.READY.value,
            )
        )
    else:
        number = await conn.scalar(
            sa.select(t.aliases.c.version).where(
                t.aliases.c.model_pk == model_pk, t.aliases.c.alias == alias
            )
        )
    return None if number is None else int(number)


# ---------------------------------------------------------------------------- versions


async def version_tags(conn: AsyncConnection, pks: Sequence[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {pk: [] for pk in pks}
    if pks:
        rows = await conn.execute(
            sa.select(t.version_tags.c.version_pk, t.version_tags.c.tag)
            .where(t.version_tags.c.version_pk.in_(pks))
            .order_by(t.version_tags.c.tag)
        )
        for row in rows:
            tags[row.version_pk].append(row.tag)
    return tags


def _to_version(
    model: str, r: VersionRow, tags: list[str], aliases: list[str], full: bool
) -> ModelVersion:
    return ModelVersion(
        model=model,
        version=r.version,
        uid=r.uid,
        artifact=Artifact(sha256=r.sha256, size_bytes=r.size_bytes, format=r.format),
        schema=decode(ModelSchema, r.schema),
        status=VersionStatus(r.status),
        description=r.description,
        author=r.author,
        source=decode(Source, r.source),
        metadata=dict(r.metadata),
        tags=tags,
        aliases=aliases,
        data_profile=r.data_profile if full else None,
        derivation=decode(Derivation, r.derivation) if r.derivation else None,
        evaluation=r.evaluation,
        create_time=r.create_time,
        update_time=r.update_time,
        etag=str(r.mod_revision),
    )


async def to_versions(
    conn: AsyncConnection, model: str, model_pk: int, rows: Sequence[VersionRow], full: bool
) -> list[ModelVersion]:
    """Resources of version rows of one model, with their tags and aliases; `full` adds
    the data profile."""
    tags = await version_tags(conn, [r.id for r in rows])
    by_version: dict[int, list[str]] = {}
    for alias in await aliases_of(conn, model_pk):
        by_version.setdefault(alias.version, []).append(alias.alias)
    return [_to_version(model, r, tags[r.id], by_version.get(r.version, []), full) for r in rows]


async def versions_of(conn: AsyncConnection, model_pk: int) -> list[ModelVersion]:
    """Every version of a model (without data profiles), oldest first."""
    model = await conn.scalar(sa.select(t.models.c.name).where(t.models.c.id == model_pk))
    rows = await conn.execute(
        sa.select(t.model_versions)
        .where(t.model_versions.c.model_pk == model_pk)
        .order_by(t.model_versions.c.version)
    )
    records = [VersionRow.of(row) for row in rows]
    return await to_versions(conn, str(model), model_pk, records, full=False)


async def _version_number(conn: AsyncConnection, ref: VersionRef, model_pk: int) -> int:
    if ref.version is not None:
        return ref.version
    number = await resolve_alias(conn, model_pk, ref.alias or LATEST)
    if number is not None:
        return number
    if ref.alias == LATEST:
        raise NotFoundError(
            f"model {ref.model!r} has no READY version yet", metadata={"resource": str(ref)}
        )
    raise NotFoundError(
        f"model {ref.model!r} has no alias {ref.alias!r}", metadata={"resource": str(ref)}
    )


async def version_row(conn: AsyncConnection, ref: VersionRef) -> tuple[ModelRow, VersionRow]:
    """The rows of the model and of the version `ref` selects; NotFoundError if none."""
    model = await model_row(conn, ref.model)
    number = await _version_number(conn, ref, model.id)
    row = (
        await conn.execute(
            sa.select(t.model_versions).where(
                t.model_versions.c.model_pk == model.id,
                t.model_versions.c.version == number,
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            f"model {ref.model!r} has no version {number}",
            metadata={"resource": names.version_name(ref.model, number)},
        )
    return model, VersionRow.of(row)


async def load_version(conn: AsyncConnection, ref: VersionRef, full: bool = True) -> ModelVersion:
    model, row = await version_row(conn, ref)
    return (await to_versions(conn, ref.model, model.id, [row], full))[0]


async def put_version_event(tx: Tx, model: str, version: int, revision: int) -> None:
    """Publish the version as it is now (a PUT event at `revision`, without its profile)."""
    resource = await load_version(tx.conn, VersionRef(model, version=version), False)
    await tx.record(
        Kind.MODEL_VERSION,
        EventType.PUT,
        names.version_name(model, version),
        resource,
        revision,
    )
