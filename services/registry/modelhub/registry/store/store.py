"""Registry persistence: every operation is one transaction that also appends its changes
to the change feed behind Watch.

Revision order equals commit order: a write transaction first locks the single
`registry_state` row (SELECT … FOR UPDATE on PostgreSQL; SQLite writers are serialized by
`Database`), takes the next revision numbers from it, and stores the new counter before it
commits. Version numbers come from `models.last_version`, incremented under the model's
row lock and rolled back with a failed transaction: no gaps, no duplicates.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    InternalError,
    InUseError,
    InvalidArgumentError,
    NotFoundError,
)
from modelhub.common.serving import BatchingConfig, Device, RuntimeConfig
from modelhub.registry import names
from modelhub.registry.jsoncodec import from_json, to_json
from modelhub.registry.names import LATEST, VersionRef
from modelhub.registry.resources import (
    Alias,
    Artifact,
    AuditPolicy,
    Deployment,
    Derivation,
    Endpoint,
    EventType,
    Kind,
    Model,
    ModelSchema,
    ModelVersion,
    Resource,
    Shadow,
    Source,
    StickyKey,
    Variant,
    VersionSelector,
    VersionStatus,
    WatchEvent,
)
from modelhub.registry.store import tables as t
from modelhub.registry.store.db import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _etag_ok(etag: str, current: int) -> bool:
    return not etag or etag == str(current)


def _stale(what: str, etag: str, current: int) -> ConflictError:
    return ConflictError(
        f"{what} was changed by someone else (etag {etag!r}, current {current}): "
        "read it again and retry",
        metadata={"current_etag": str(current)},
    )


@dataclass
class _Tx:
    """A write transaction's revision counter and the changes it records."""

    conn: AsyncConnection
    revision: int
    compacted: int
    now: datetime = field(default_factory=utcnow)
    events: list[WatchEvent] = field(default_factory=list)

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision


# Spec parts of deployments and endpoints stored as JSON (everything but identity/labels).
@dataclass
class _DeploymentSpec:
    model: str
    versions: list[VersionSelector]
    instance_count: int
    device: Device
    batching: BatchingConfig
    runtime: RuntimeConfig


@dataclass
class _EndpointSpec:
    description: str
    sticky_key: StickyKey | None
    salt: str
    variants: list[Variant]
    shadows: list[Shadow]
    fallback: str
    # Absent in specs stored before the audit log existed.
    audit: AuditPolicy | None = None


@dataclass(frozen=True)
class _Policy:
    """A table of named policy resources (deployments or endpoints)."""

    kind: Kind
    what: str  # "deployment" / "endpoint": messages, resource names, version_refs.owner_kind
    table: sa.Table


_DEPLOYMENTS = _Policy(Kind.DEPLOYMENT, "deployment", t.deployments)
_ENDPOINTS = _Policy(Kind.ENDPOINT, "endpoint", t.endpoints)


def _shield_public_methods(cls: type[RegistryStore]) -> type[RegistryStore]:
    """Run every public store operation through `Database.shielded`."""
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            continue

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            async def shielded(self: RegistryStore, *args: Any, **kwargs: Any) -> Any:
                return await self.db.shielded(fn(self, *args, **kwargs))

            return shielded

        setattr(cls, name, wrap(method))
    return cls


@_shield_public_methods
class RegistryStore:
    def __init__(
        self,
        db: Database,
        history: int = 100_000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.history = history
        self._on_commit = on_commit

    # ------------------------------------------------------------------ transactions

    async def _begin(self, conn: AsyncConnection) -> _Tx:
        row = (
            await conn.execute(
                sa.select(t.registry_state.c.revision, t.registry_state.c.compacted_revision)
                .where(t.registry_state.c.id == 1)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise InternalError("registry_state row is missing: was the database migrated?")
        return _Tx(conn=conn, revision=row.revision, compacted=row.compacted_revision)

    async def _record(
        self, tx: _Tx, kind: Kind, type_: EventType, name: str, resource: Resource, revision: int
    ) -> None:
        tx.events.append(WatchEvent(type_, revision, kind, name, resource))
        await tx.conn.execute(
            t.changes.insert().values(
                revision=revision,
                kind=kind.value,
                type=type_.value,
                name=name,
                payload=to_json(resource),
                create_time=tx.now,
            )
        )

    async def _finish(self, tx: _Tx) -> None:
        values: dict[str, int] = {"revision": tx.revision}
        floor = tx.revision - self.history
        # Compact in steps of a tenth of the history to keep the delete cheap and rare.
        if floor - tx.compacted > max(self.history // 10, 1):
            await tx.conn.execute(sa.delete(t.changes).where(t.changes.c.revision <= floor))
            values["compacted_revision"] = floor
        await tx.conn.execute(
            sa.update(t.registry_state).where(t.registry_state.c.id == 1).values(**values)
        )

    async def _write(self, body: Callable[[_Tx], Any]) -> Any:
        async with self.db.write() as conn:
            tx = await self._begin(conn)
            try:
                result = await body(tx)
            except IntegrityError as exc:
                raise AlreadyExistsError(f"conflicting write: {exc.orig}") from exc
            await self._finish(tx)
        if tx.events and self._on_commit is not None:
            self._on_commit(tx.revision)
        return result

    # ------------------------------------------------------------------------ models

    async def _model_row(self, conn: AsyncConnection, model: str, lock: bool = False) -> Any:
        query = sa.select(t.models).where(t.models.c.name == model)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise NotFoundError(
                f"model {model!r} not found", metadata={"resource": names.model_name(model)}
            )
        return row

    async def _model_tags(self, conn: AsyncConnection, pks: Sequence[int]) -> dict[int, list[str]]:
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

    @staticmethod
    def _to_model(row: Any, tags: list[str]) -> Model:
        return Model(
            id=row.name,
            uid=row.uid,
            description=row.description,
            tags=tags,
            labels=dict(row.labels),
            latest_version=row.last_version,
            create_time=_utc(row.create_time),
            update_time=_utc(row.update_time),
            etag=str(row.mod_revision),
        )

    async def _load_model(self, conn: AsyncConnection, model: str) -> Model:
        row = await self._model_row(conn, model)
        return self._to_model(row, (await self._model_tags(conn, [row.id]))[row.id])

    async def _put_model_event(self, tx: _Tx, model: str, revision: int) -> Model:
        resource = await self._load_model(tx.conn, model)
        await self._record(
            tx, Kind.MODEL, EventType.PUT, names.model_name(model), resource, revision
        )
        return resource

    async def _insert_model(self, tx: _Tx, model: Model) -> int:
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
        await self._put_model_event(tx, model.id, revision)
        assert pk is not None
        return int(pk)

    async def create_model(self, model: Model) -> Model:
        async def body(tx: _Tx) -> Model:
            await self._insert_model(tx, model)
            return await self._load_model(tx.conn, model.id)

        result: Model = await self._write(body)
        return result

    async def get_model(self, model: str) -> Model:
        async with self.db.read() as conn:
            return await self._load_model(conn, model)

    async def list_models(
        self, limit: int, after: str | None, name_prefix: str, tag: str
    ) -> tuple[list[Model], bool]:
        query = sa.select(t.models).order_by(t.models.c.name).limit(limit + 1)
        if after:
            query = query.where(t.models.c.name > after)
        if name_prefix:
            escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(t.models.c.name.like(escaped + "%", escape="\\"))
        if tag:
            query = query.where(
                t.models.c.id.in_(
                    sa.select(t.model_tags.c.model_pk).where(t.model_tags.c.tag == tag)
                )
            )
        async with self.db.read() as conn:
            rows = list(await conn.execute(query))
            more = len(rows) > limit
            rows = rows[:limit]
            tags = await self._model_tags(conn, [r.id for r in rows])
        return [self._to_model(r, tags[r.id]) for r in rows], more

    async def update_model(self, model: str, mutate: Callable[[Model], Model], etag: str) -> Model:
        async def body(tx: _Tx) -> Model:
            row = await self._model_row(tx.conn, model, lock=True)
            if not _etag_ok(etag, row.mod_revision):
                raise _stale(f"model {model!r}", etag, row.mod_revision)
            current = self._to_model(row, (await self._model_tags(tx.conn, [row.id]))[row.id])
            updated = mutate(current)
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
            return await self._put_model_event(tx, model, revision)

        result: Model = await self._write(body)
        return result

    async def _users(
        self,
        conn: AsyncConnection,
        model_pk: int,
        version: int | None = None,
        alias: str | None = None,
    ) -> list[str]:
        """Deployments/endpoints selecting this model (optionally: this version or alias)."""
        query = sa.select(t.version_refs.c.owner_kind, t.version_refs.c.owner_name).where(
            t.version_refs.c.model_pk == model_pk
        )
        if alias is not None:
            query = query.where(t.version_refs.c.alias == alias)
        rows = await conn.execute(query.distinct())
        users = [f"{r.owner_kind}s/{r.owner_name}" for r in rows]
        if version is not None:
            # Users by number, plus users whose alias/latest selector resolves to it now.
            users = []
            for row in await conn.execute(
                sa.select(t.version_refs).where(t.version_refs.c.model_pk == model_pk)
            ):
                selected = row.version
                if selected is None:
                    selected = await self._resolve_alias(conn, model_pk, row.alias or LATEST)
                if selected == version:
                    users.append(f"{row.owner_kind}s/{row.owner_name}")
        return sorted(set(users))

    async def delete_model(self, model: str, etag: str) -> list[str]:
        """Delete a model with its versions and aliases; returns its artifact digests."""

        async def body(tx: _Tx) -> list[str]:
            row = await self._model_row(tx.conn, model, lock=True)
            if not _etag_ok(etag, row.mod_revision):
                raise _stale(f"model {model!r}", etag, row.mod_revision)
            users = await self._users(tx.conn, row.id)
            if users:
                raise InUseError(
                    f"model {model!r} is used by {', '.join(users)}: remove it from them first",
                    metadata={"used_by": ",".join(users)},
                )
            resource = await self._load_model(tx.conn, model)
            for alias in await self._aliases(tx.conn, row.id):
                await self._record(
                    tx,
                    Kind.ALIAS,
                    EventType.DELETE,
                    names.alias_name(model, alias.alias),
                    alias,
                    tx.next_revision(),
                )
            digests: list[str] = []
            for version in await self._versions_of(tx.conn, row.id):
                digests.append(version.artifact.sha256)
                await self._record(
                    tx,
                    Kind.MODEL_VERSION,
                    EventType.DELETE,
                    names.version_name(model, version.version),
                    version,
                    tx.next_revision(),
                )
            await tx.conn.execute(sa.delete(t.aliases).where(t.aliases.c.model_pk == row.id))
            await tx.conn.execute(
                sa.delete(t.model_versions).where(t.model_versions.c.model_pk == row.id)
            )
            await tx.conn.execute(sa.delete(t.models).where(t.models.c.id == row.id))
            await self._record(
                tx,
                Kind.MODEL,
                EventType.DELETE,
                names.model_name(model),
                resource,
                tx.next_revision(),
            )
            return digests

        result: list[str] = await self._write(body)
        return result

    # ---------------------------------------------------------------------- versions

    async def _aliases(self, conn: AsyncConnection, model_pk: int) -> list[Alias]:
        model = await conn.scalar(sa.select(t.models.c.name).where(t.models.c.id == model_pk))
        rows = await conn.execute(
            sa.select(t.aliases).where(t.aliases.c.model_pk == model_pk).order_by(t.aliases.c.alias)
        )
        return [
            Alias(
                model=str(model), alias=r.alias, version=r.version, update_time=_utc(r.update_time)
            )
            for r in rows
        ]

    async def _version_tags(
        self, conn: AsyncConnection, pks: Sequence[int]
    ) -> dict[int, list[str]]:
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

    async def _to_versions(
        self, conn: AsyncConnection, model: str, model_pk: int, rows: Sequence[Any], full: bool
    ) -> list[ModelVersion]:
        tags = await self._version_tags(conn, [r.id for r in rows])
        by_version: dict[int, list[str]] = {}
        for alias in await self._aliases(conn, model_pk):
            by_version.setdefault(alias.version, []).append(alias.alias)
        return [
            ModelVersion(
                model=model,
                version=r.version,
                uid=r.uid,
                artifact=Artifact(sha256=r.sha256, size_bytes=r.size_bytes, format=r.format),
                schema=from_json(ModelSchema, r.schema),
                status=VersionStatus(r.status),
                description=r.description,
                author=r.author,
                source=from_json(Source, r.source),
                metadata=dict(r.metadata),
                tags=tags[r.id],
                aliases=by_version.get(r.version, []),
                data_profile=r.data_profile if full else None,
                derivation=from_json(Derivation, r.derivation) if r.derivation else None,
                evaluation=r.evaluation,
                create_time=_utc(r.create_time),
                update_time=_utc(r.update_time),
                etag=str(r.mod_revision),
            )
            for r in rows
        ]

    async def _versions_of(self, conn: AsyncConnection, model_pk: int) -> list[ModelVersion]:
        model = await conn.scalar(sa.select(t.models.c.name).where(t.models.c.id == model_pk))
        rows = list(
            await conn.execute(
                sa.select(t.model_versions)
                .where(t.model_versions.c.model_pk == model_pk)
                .order_by(t.model_versions.c.version)
            )
        )
        return await self._to_versions(conn, str(model), model_pk, rows, full=False)

    async def _resolve_alias(self, conn: AsyncConnection, model_pk: int, alias: str) -> int | None:
        if alias == LATEST:
            return await conn.scalar(
                sa.select(sa.func.max(t.model_versions.c.version)).where(
                    t.model_versions.c.model_pk == model_pk,
                    t.model_versions.c.status == VersionStatus.READY.value,
                )
            )
        return await conn.scalar(
            sa.select(t.aliases.c.version).where(
                t.aliases.c.model_pk == model_pk, t.aliases.c.alias == alias
            )
        )

    async def _version_row(self, conn: AsyncConnection, ref: VersionRef) -> tuple[Any, Any]:
        model_row = await self._model_row(conn, ref.model)
        number = ref.version
        if number is None:
            number = await self._resolve_alias(conn, model_row.id, ref.alias or LATEST)
            if number is None:
                if ref.alias == LATEST:
                    raise NotFoundError(
                        f"model {ref.model!r} has no READY version yet",
                        metadata={"resource": str(ref)},
                    )
                raise NotFoundError(
                    f"model {ref.model!r} has no alias {ref.alias!r}",
                    metadata={"resource": str(ref)},
                )
        row = (
            await conn.execute(
                sa.select(t.model_versions).where(
                    t.model_versions.c.model_pk == model_row.id,
                    t.model_versions.c.version == number,
                )
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError(
                f"model {ref.model!r} has no version {number}",
                metadata={"resource": names.version_name(ref.model, number)},
            )
        return model_row, row

    async def _load_version(
        self, conn: AsyncConnection, ref: VersionRef, full: bool = True
    ) -> ModelVersion:
        model_row, row = await self._version_row(conn, ref)
        return (await self._to_versions(conn, ref.model, model_row.id, [row], full))[0]

    async def _put_version_event(self, tx: _Tx, model: str, version: int, revision: int) -> None:
        resource = await self._load_version(tx.conn, VersionRef(model, version=version), False)
        await self._record(
            tx,
            Kind.MODEL_VERSION,
            EventType.PUT,
            names.version_name(model, version),
            resource,
            revision,
        )

    async def add_version(
        self, draft: ModelVersion, create_model: bool, aliases: list[str], claim: str = ""
    ) -> ModelVersion:
        """Insert a version (number assigned here), optionally creating its model and
        pointing aliases at it, in one transaction that also releases the upload's blob
        `claim`. `draft.version` is ignored."""

        async def body(tx: _Tx) -> ModelVersion:
            if claim:
                await tx.conn.execute(sa.delete(t.blob_claims).where(t.blob_claims.c.id == claim))
            found = await tx.conn.scalar(
                sa.select(t.models.c.id).where(t.models.c.name == draft.model)
            )
            if found is None:
                if not create_model:
                    raise NotFoundError(
                        f"model {draft.model!r} not found: create it first or set "
                        "create_model in the upload metadata",
                        metadata={"resource": names.model_name(draft.model)},
                    )
                await self._insert_model(tx, Model(id=draft.model, uid=""))
            allocated = (
                await tx.conn.execute(
                    sa.update(t.models)
                    .where(t.models.c.name == draft.model)
                    .values(last_version=t.models.c.last_version + 1)
                    .returning(t.models.c.last_version, t.models.c.id)
                )
            ).one()
            number, model_pk = int(allocated.last_version), int(allocated.id)
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
            await self._put_version_event(tx, draft.model, number, revision)
            await tx.conn.execute(
                sa.update(t.models)
                .where(t.models.c.id == model_pk)
                .values(update_time=tx.now, mod_revision=tx.next_revision())
            )
            await self._put_model_event(tx, draft.model, tx.revision)
            for alias in aliases:
                await self._set_alias(tx, draft.model, model_pk, alias, number)
            await self._touch_dependents(tx, model_pk)
            return await self._load_version(tx.conn, VersionRef(draft.model, version=number))

        result: ModelVersion = await self._write(body)
        return result

    async def get_version(self, ref: VersionRef, full: bool = True) -> ModelVersion:
        async with self.db.read() as conn:
            return await self._load_version(conn, ref, full)

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
        async with self.db.read() as conn:
            model_row = await self._model_row(conn, model)
            c = t.model_versions.c
            query = (
                sa.select(t.model_versions)
                .where(c.model_pk == model_row.id)
                .order_by(c.version.desc())
                .limit(limit + 1)
            )
            if before is not None:
                query = query.where(c.version < before)
            if status is not None:
                query = query.where(c.status == status.value)
            if tag:
                query = query.where(
                    c.id.in_(
                        sa.select(t.version_tags.c.version_pk).where(t.version_tags.c.tag == tag)
                    )
                )
            if alias:
                number = await self._resolve_alias(conn, model_row.id, alias)
                if number is None:
                    return [], False
                query = query.where(c.version == number)
            rows = list(await conn.execute(query))
            more = len(rows) > limit
            return await self._to_versions(conn, model, model_row.id, rows[:limit], full), more

    async def update_version(
        self,
        model: str,
        version: int,
        mutate: Callable[[ModelVersion], ModelVersion],
        etag: str,
    ) -> ModelVersion:
        async def body(tx: _Tx) -> ModelVersion:
            model_row, row = await self._version_row(tx.conn, VersionRef(model, version=version))
            if not _etag_ok(etag, row.mod_revision):
                raise _stale(names.version_name(model, version), etag, row.mod_revision)
            current = (await self._to_versions(tx.conn, model, model_row.id, [row], True))[0]
            updated = mutate(current)
            if updated.status != current.status and updated.status == VersionStatus.ARCHIVED:
                users = await self._users(tx.conn, model_row.id, version=version)
                if users:
                    raise InUseError(
                        f"{names.version_name(model, version)} is used by {', '.join(users)}: "
                        "route them elsewhere before archiving it",
                        metadata={"used_by": ",".join(users)},
                    )
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
            await tx.conn.execute(
                sa.delete(t.version_tags).where(t.version_tags.c.version_pk == row.id)
            )
            if updated.tags:
                await tx.conn.execute(
                    t.version_tags.insert(),
                    [{"version_pk": row.id, "tag": x} for x in updated.tags],
                )
            await self._put_version_event(tx, model, version, revision)
            if updated.status != current.status:
                await self._touch_dependents(tx, model_row.id)
            return await self._load_version(tx.conn, VersionRef(model, version=version))

        result: ModelVersion = await self._write(body)
        return result

    async def delete_version(self, model: str, version: int, etag: str) -> str:
        """Delete a version and the aliases pointing at it; returns its artifact digest."""

        async def body(tx: _Tx) -> str:
            model_row, row = await self._version_row(tx.conn, VersionRef(model, version=version))
            if not _etag_ok(etag, row.mod_revision):
                raise _stale(names.version_name(model, version), etag, row.mod_revision)
            users = await self._users(tx.conn, model_row.id, version=version)
            if users:
                raise InUseError(
                    f"{names.version_name(model, version)} is used by {', '.join(users)}: "
                    "route them elsewhere before deleting it",
                    metadata={"used_by": ",".join(users)},
                )
            resource = (await self._to_versions(tx.conn, model, model_row.id, [row], False))[0]
            for alias in await self._aliases(tx.conn, model_row.id):
                if alias.version == version:
                    await tx.conn.execute(
                        sa.delete(t.aliases).where(
                            t.aliases.c.model_pk == model_row.id, t.aliases.c.alias == alias.alias
                        )
                    )
                    await self._record(
                        tx,
                        Kind.ALIAS,
                        EventType.DELETE,
                        names.alias_name(model, alias.alias),
                        alias,
                        tx.next_revision(),
                    )
            await tx.conn.execute(
                sa.delete(t.model_versions).where(t.model_versions.c.id == row.id)
            )
            await self._record(
                tx,
                Kind.MODEL_VERSION,
                EventType.DELETE,
                names.version_name(model, version),
                resource,
                tx.next_revision(),
            )
            await self._touch_dependents(tx, model_row.id)
            return str(row.sha256)

        result: str = await self._write(body)
        return result

    async def referenced_digests(self) -> set[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(t.model_versions.c.sha256).distinct())
            return {r.sha256 for r in rows}

    # ------------------------------------------------------------------- blob claims
    #
    # Replicas share one blob folder. A blob without a version row is either debris or an
    # upload between moving its blob into place and inserting its version; the claim tells
    # the two apart. Claims are taken and blobs deleted under the registry_state lock of a
    # write transaction, so a delete sees every claim taken before it, and a claim taken
    # after it finds the blob gone and moves its own file into place.

    async def claim_blob(self, sha256: str) -> str:
        """Record that an upload is about to move the blob `sha256` into place; returns the
        claim, which `add_version` (or `drop_blob`) removes."""
        claim = uuid.uuid4().hex

        async def body(tx: _Tx) -> None:
            await tx.conn.execute(
                t.blob_claims.insert().values(id=claim, sha256=sha256, create_time=tx.now)
            )

        await self._write(body)
        return claim

    async def drop_blob(
        self,
        sha256: str,
        delete: Callable[[], None],
        grace: timedelta,
        claim: str = "",
    ) -> bool:
        """Delete the blob `sha256` (`delete` runs in a worker thread while the write lock is
        held) unless a version references it or an upload claimed it less than `grace` ago.
        `claim`, the caller's own claim, is released first. True when deleted."""

        async def body(tx: _Tx) -> bool:
            claims = t.blob_claims
            if claim:
                await tx.conn.execute(sa.delete(claims).where(claims.c.id == claim))
            referenced = await tx.conn.scalar(
                sa.select(t.model_versions.c.id).where(t.model_versions.c.sha256 == sha256).limit(1)
            )
            claimed = await tx.conn.scalar(
                sa.select(claims.c.id)
                .where(claims.c.sha256 == sha256, claims.c.create_time > tx.now - grace)
                .limit(1)
            )
            if referenced is not None or claimed is not None:
                return False
            await asyncio.to_thread(delete)
            return True

        deleted: bool = await self._write(body)
        return deleted

    async def expire_claims(self, grace: timedelta) -> int:
        """Remove claims older than `grace` (uploads that died between claim and version)."""

        async def body(tx: _Tx) -> int:
            result = await tx.conn.execute(
                sa.delete(t.blob_claims).where(t.blob_claims.c.create_time <= tx.now - grace)
            )
            return int(result.rowcount or 0)

        expired: int = await self._write(body)
        return expired

    # ----------------------------------------------------------------------- aliases

    async def _set_alias(
        self, tx: _Tx, model: str, model_pk: int, alias: str, version: int
    ) -> Alias:
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
                f"{names.version_name(model, version)} is {status}: only READY versions can be "
                "aliased"
            )
        previous = await self._resolve_alias(tx.conn, model_pk, alias)
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
        await self._record(
            tx, Kind.ALIAS, EventType.PUT, names.alias_name(model, alias), resource, revision
        )
        # The versions' alias lists changed: the new target first, then the old one.
        for number in [version] + ([previous] if previous not in (None, version) else []):
            assert number is not None
            await self._put_version_event(tx, model, number, tx.next_revision())
        return resource

    async def set_alias(self, model: str, alias: str, version: int) -> Alias:
        async def body(tx: _Tx) -> Alias:
            row = await self._model_row(tx.conn, model, lock=True)
            resource = await self._set_alias(tx, model, row.id, alias, version)
            await self._touch_dependents(tx, row.id)
            return resource

        result: Alias = await self._write(body)
        return result

    async def delete_alias(self, model: str, alias: str) -> None:
        async def body(tx: _Tx) -> None:
            row = await self._model_row(tx.conn, model, lock=True)
            version = await self._resolve_alias(tx.conn, row.id, alias)
            if version is None:
                raise NotFoundError(
                    f"model {model!r} has no alias {alias!r}",
                    metadata={"resource": names.alias_name(model, alias)},
                )
            users = await self._users(tx.conn, row.id, alias=alias)
            if users:
                raise InUseError(
                    f"alias {alias!r} of model {model!r} is used by {', '.join(users)}",
                    metadata={"used_by": ",".join(users)},
                )
            await tx.conn.execute(
                sa.delete(t.aliases).where(
                    t.aliases.c.model_pk == row.id, t.aliases.c.alias == alias
                )
            )
            resource = Alias(model=model, alias=alias, version=version, update_time=tx.now)
            await self._record(
                tx,
                Kind.ALIAS,
                EventType.DELETE,
                names.alias_name(model, alias),
                resource,
                tx.next_revision(),
            )
            await self._put_version_event(tx, model, version, tx.next_revision())

        await self._write(body)

    async def list_aliases(self, model: str) -> list[Alias]:
        async with self.db.read() as conn:
            row = await self._model_row(conn, model)
            return await self._aliases(conn, row.id)

    # ------------------------------------------------- deployments and endpoints: refs

    async def _resolve_selector(
        self, conn: AsyncConnection, model: str, selector: VersionSelector, field: str
    ) -> tuple[int, VersionSelector]:
        """(model pk, selector with resolved_version); InvalidArgument when it resolves to
        nothing usable."""
        model_pk = await conn.scalar(sa.select(t.models.c.id).where(t.models.c.name == model))
        if model_pk is None:
            raise InvalidArgumentError(f"model {model!r} does not exist", field=field)
        if selector.version is not None:
            number: int | None = selector.version
            status = await conn.scalar(
                sa.select(t.model_versions.c.status).where(
                    t.model_versions.c.model_pk == model_pk,
                    t.model_versions.c.version == selector.version,
                )
            )
            if status is None:
                raise InvalidArgumentError(
                    f"model {model!r} has no version {selector.version}", field=field
                )
            if status != VersionStatus.READY.value:
                raise InvalidArgumentError(
                    f"{names.version_name(model, selector.version)} is {status}; only READY "
                    "versions can be deployed or routed to",
                    field=field,
                )
        else:
            alias = selector.alias or LATEST
            number = await self._resolve_alias(conn, model_pk, alias)
            if number is None:
                what = "no READY version" if alias == LATEST else f"no alias {alias!r}"
                raise InvalidArgumentError(f"model {model!r} has {what}", field=field)
        assert number is not None
        return int(model_pk), replace(selector, resolved_version=number)

    async def _resolve_current(
        self, conn: AsyncConnection, model: str, selector: VersionSelector
    ) -> VersionSelector:
        """Resolution at read time; 0 when the selected version has gone."""
        try:
            _, resolved = await self._resolve_selector(conn, model, selector, "")
        except InvalidArgumentError:
            return replace(selector, resolved_version=0)
        return resolved

    async def _save_refs(
        self, tx: _Tx, kind: str, owner: str, refs: Iterable[tuple[int, VersionSelector]]
    ) -> None:
        await tx.conn.execute(
            sa.delete(t.version_refs).where(
                t.version_refs.c.owner_kind == kind, t.version_refs.c.owner_name == owner
            )
        )
        rows = [
            {
                "owner_kind": kind,
                "owner_name": owner,
                "model_pk": pk,
                "version": sel.version,
                "alias": None if sel.version is not None else (sel.alias or LATEST),
            }
            for pk, sel in refs
        ]
        if rows:
            await tx.conn.execute(t.version_refs.insert(), rows)

    async def _touch_dependents(self, tx: _Tx, model_pk: int) -> None:
        """Re-publish deployments/endpoints whose alias or latest selectors on this model may
        now resolve differently, so watchers see the new resolved versions."""
        rows = await tx.conn.execute(
            sa.select(t.version_refs.c.owner_kind, t.version_refs.c.owner_name)
            .where(t.version_refs.c.model_pk == model_pk, t.version_refs.c.alias.is_not(None))
            .distinct()
        )
        for row in sorted(rows, key=lambda r: (r.owner_kind, r.owner_name)):
            revision = tx.next_revision()
            if row.owner_kind == "deployment":
                await tx.conn.execute(
                    sa.update(t.deployments)
                    .where(t.deployments.c.name == row.owner_name)
                    .values(mod_revision=revision)
                )
                deployment = await self._load_deployment(tx.conn, row.owner_name)
                await self._record(
                    tx,
                    Kind.DEPLOYMENT,
                    EventType.PUT,
                    f"deployments/{row.owner_name}",
                    deployment,
                    revision,
                )
            else:
                await tx.conn.execute(
                    sa.update(t.endpoints)
                    .where(t.endpoints.c.name == row.owner_name)
                    .values(mod_revision=revision)
                )
                endpoint = await self._load_endpoint(tx.conn, row.owner_name)
                await self._record(
                    tx,
                    Kind.ENDPOINT,
                    EventType.PUT,
                    f"endpoints/{row.owner_name}",
                    endpoint,
                    revision,
                )

    # ------------------------------------------- deployments and endpoints: storage
    # Both are a named row holding a JSON spec, with version refs, an etag and a change
    # event per write: one set of operations serves the two tables.

    async def _policy_row(
        self, conn: AsyncConnection, policy: _Policy, name: str, lock: bool = False
    ) -> Any:
        table = policy.table
        query = sa.select(table).where(table.c.name == name)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise NotFoundError(
                f"{policy.what} {name!r} not found",
                metadata={"resource": f"{policy.what}s/{name}"},
            )
        return row

    async def _to_policy(self, conn: AsyncConnection, policy: _Policy, row: Any) -> Any:
        if policy.kind is Kind.DEPLOYMENT:
            return await self._row_to_deployment(conn, row)
        return await self._row_to_endpoint(conn, row)

    async def _store_policy(
        self,
        tx: _Tx,
        policy: _Policy,
        name: str,
        values: dict[str, Any],
        refs: list[tuple[int, VersionSelector]],
        pk: int | None,
    ) -> Any:
        """Insert (pk None) or update the row, its refs, and record the PUT event."""
        table = policy.table
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
        await self._save_refs(tx, policy.what, name, refs)
        resource = await self._to_policy(
            tx.conn, policy, await self._policy_row(tx.conn, policy, name)
        )
        await self._record(
            tx, policy.kind, EventType.PUT, f"{policy.what}s/{name}", resource, revision
        )
        return resource

    async def _create_policy(
        self, policy: _Policy, name: str, write: Callable[[_Tx, int | None], Any]
    ) -> Any:
        async def body(tx: _Tx) -> Any:
            table = policy.table
            exists = await tx.conn.scalar(sa.select(table.c.id).where(table.c.name == name))
            if exists is not None:
                raise AlreadyExistsError(
                    f"{policy.what} {name!r} already exists",
                    metadata={"resource": f"{policy.what}s/{name}"},
                )
            return await write(tx, None)

        return await self._write(body)

    async def _update_policy(
        self,
        policy: _Policy,
        name: str,
        etag: str,
        write: Callable[[_Tx, Any, int], Any],
    ) -> Any:
        """Lock the row, check the etag, then `write(tx, current resource, pk)`."""

        async def body(tx: _Tx) -> Any:
            row = await self._policy_row(tx.conn, policy, name, lock=True)
            if not _etag_ok(etag, row.mod_revision):
                raise _stale(f"{policy.what} {name!r}", etag, row.mod_revision)
            return await write(tx, await self._to_policy(tx.conn, policy, row), row.id)

        return await self._write(body)

    async def _delete_policy(self, policy: _Policy, name: str, etag: str) -> None:
        async def body(tx: _Tx) -> None:
            row = await self._policy_row(tx.conn, policy, name, lock=True)
            if not _etag_ok(etag, row.mod_revision):
                raise _stale(f"{policy.what} {name!r}", etag, row.mod_revision)
            resource = await self._to_policy(tx.conn, policy, row)
            await self._save_refs(tx, policy.what, name, [])
            await tx.conn.execute(sa.delete(policy.table).where(policy.table.c.id == row.id))
            await self._record(
                tx,
                policy.kind,
                EventType.DELETE,
                f"{policy.what}s/{name}",
                resource,
                tx.next_revision(),
            )

        await self._write(body)

    async def _list_policies(
        self, policy: _Policy, limit: int, after: str | None, model: str = ""
    ) -> tuple[list[Any], bool]:
        table = policy.table
        query = sa.select(table).order_by(table.c.name).limit(limit + 1)
        if after:
            query = query.where(table.c.name > after)
        async with self.db.read() as conn:
            if model:
                model_pk = await conn.scalar(
                    sa.select(t.models.c.id).where(t.models.c.name == model)
                )
                query = query.where(table.c.model_pk == (model_pk or -1))
            rows = list(await conn.execute(query))
            items = [await self._to_policy(conn, policy, r) for r in rows[:limit]]
        return items, len(rows) > limit

    async def _get_policy(self, policy: _Policy, name: str) -> Any:
        async with self.db.read() as conn:
            return await self._to_policy(conn, policy, await self._policy_row(conn, policy, name))

    # -------------------------------------------------------------------- deployments

    async def _row_to_deployment(self, conn: AsyncConnection, row: Any) -> Deployment:
        spec = from_json(_DeploymentSpec, row.spec)
        versions = [await self._resolve_current(conn, spec.model, s) for s in spec.versions]
        return Deployment(
            id=row.name,
            uid=row.uid,
            model=spec.model,
            versions=versions,
            instance_count=spec.instance_count,
            device=spec.device,
            batching=spec.batching,
            runtime=spec.runtime,
            labels=dict(row.labels),
            create_time=_utc(row.create_time),
            update_time=_utc(row.update_time),
            etag=str(row.mod_revision),
        )

    async def _load_deployment(self, conn: AsyncConnection, name: str) -> Deployment:
        row = await self._policy_row(conn, _DEPLOYMENTS, name)
        return await self._row_to_deployment(conn, row)

    async def _write_deployment(self, tx: _Tx, dep: Deployment, pk: int | None) -> Deployment:
        refs = [
            await self._resolve_selector(tx.conn, dep.model, selector, f"deployment.versions[{i}]")
            for i, selector in enumerate(dep.versions)
        ]
        spec = _DeploymentSpec(
            model=dep.model,
            versions=[replace(s, resolved_version=0) for s in dep.versions],
            instance_count=dep.instance_count,
            device=dep.device,
            batching=dep.batching,
            runtime=dep.runtime,
        )
        values = {"model_pk": refs[0][0], "spec": to_json(spec), "labels": dep.labels}
        result: Deployment = await self._store_policy(tx, _DEPLOYMENTS, dep.id, values, refs, pk)
        return result

    async def create_deployment(self, dep: Deployment) -> Deployment:
        result: Deployment = await self._create_policy(
            _DEPLOYMENTS, dep.id, lambda tx, pk: self._write_deployment(tx, dep, pk)
        )
        return result

    async def get_deployment(self, name: str) -> Deployment:
        result: Deployment = await self._get_policy(_DEPLOYMENTS, name)
        return result

    async def list_deployments(
        self, limit: int, after: str | None, model: str
    ) -> tuple[list[Deployment], bool]:
        return await self._list_policies(_DEPLOYMENTS, limit, after, model)

    async def update_deployment(
        self, name: str, mutate: Callable[[Deployment], Deployment], etag: str
    ) -> Deployment:
        result: Deployment = await self._update_policy(
            _DEPLOYMENTS,
            name,
            etag,
            lambda tx, current, pk: self._write_deployment(tx, mutate(current), pk),
        )
        return result

    async def delete_deployment(self, name: str, etag: str) -> None:
        await self._delete_policy(_DEPLOYMENTS, name, etag)

    # ---------------------------------------------------------------------- endpoints

    async def _row_to_endpoint(self, conn: AsyncConnection, row: Any) -> Endpoint:
        spec = from_json(_EndpointSpec, row.spec)
        variants = [
            replace(v, selector=await self._resolve_current(conn, v.model, v.selector))
            for v in spec.variants
        ]
        shadows = [
            replace(s, selector=await self._resolve_current(conn, s.model, s.selector))
            for s in spec.shadows
        ]
        return Endpoint(
            id=row.name,
            uid=row.uid,
            description=spec.description,
            sticky_key=spec.sticky_key,
            salt=spec.salt,
            variants=variants,
            shadows=shadows,
            fallback=spec.fallback,
            audit=spec.audit,
            labels=dict(row.labels),
            create_time=_utc(row.create_time),
            update_time=_utc(row.update_time),
            etag=str(row.mod_revision),
        )

    async def _load_endpoint(self, conn: AsyncConnection, name: str) -> Endpoint:
        row = await self._policy_row(conn, _ENDPOINTS, name)
        return await self._row_to_endpoint(conn, row)

    async def _write_endpoint(self, tx: _Tx, ep: Endpoint, pk: int | None) -> Endpoint:
        refs = [
            await self._resolve_selector(tx.conn, v.model, v.selector, f"endpoint.variants[{i}]")
            for i, v in enumerate(ep.variants)
        ] + [
            await self._resolve_selector(tx.conn, s.model, s.selector, f"endpoint.shadows[{i}]")
            for i, s in enumerate(ep.shadows)
        ]
        spec = _EndpointSpec(
            description=ep.description,
            sticky_key=ep.sticky_key,
            salt=ep.salt,
            variants=[
                replace(v, selector=replace(v.selector, resolved_version=0)) for v in ep.variants
            ],
            shadows=[
                replace(s, selector=replace(s.selector, resolved_version=0)) for s in ep.shadows
            ],
            fallback=ep.fallback,
            audit=ep.audit,
        )
        values = {"spec": to_json(spec), "labels": ep.labels}
        result: Endpoint = await self._store_policy(tx, _ENDPOINTS, ep.id, values, refs, pk)
        return result

    async def create_endpoint(self, ep: Endpoint) -> Endpoint:
        result: Endpoint = await self._create_policy(
            _ENDPOINTS, ep.id, lambda tx, pk: self._write_endpoint(tx, ep, pk)
        )
        return result

    async def get_endpoint(self, name: str) -> Endpoint:
        result: Endpoint = await self._get_policy(_ENDPOINTS, name)
        return result

    async def list_endpoints(self, limit: int, after: str | None) -> tuple[list[Endpoint], bool]:
        return await self._list_policies(_ENDPOINTS, limit, after)

    async def update_endpoint(
        self, name: str, mutate: Callable[[Endpoint], Endpoint], etag: str
    ) -> Endpoint:
        result: Endpoint = await self._update_policy(
            _ENDPOINTS,
            name,
            etag,
            lambda tx, current, pk: self._write_endpoint(tx, mutate(current), pk),
        )
        return result

    async def delete_endpoint(self, name: str, etag: str) -> None:
        await self._delete_policy(_ENDPOINTS, name, etag)

    # -------------------------------------------------------------------------- watch

    async def state(self) -> tuple[int, int]:
        """(current revision, compacted revision)."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(t.registry_state.c.revision, t.registry_state.c.compacted_revision)
                )
            ).one()
            return int(row.revision), int(row.compacted_revision)

    async def snapshot(self) -> tuple[int, list[WatchEvent]]:
        """Every resource as a PUT event, and the revision this state is at."""
        async with self.db.read(snapshot=True) as conn:
            revision = int(await conn.scalar(sa.select(t.registry_state.c.revision)) or 0)
            events: list[WatchEvent] = []
            model_rows = list(await conn.execute(sa.select(t.models).order_by(t.models.c.name)))
            tags = await self._model_tags(conn, [r.id for r in model_rows])
            for row in model_rows:
                model = self._to_model(row, tags[row.id])
                events.append(
                    WatchEvent(
                        EventType.PUT,
                        row.mod_revision,
                        Kind.MODEL,
                        names.model_name(model.id),
                        model,
                    )
                )
                for version in await self._versions_of(conn, row.id):
                    events.append(
                        WatchEvent(
                            EventType.PUT,
                            int(version.etag),
                            Kind.MODEL_VERSION,
                            names.version_name(model.id, version.version),
                            version,
                        )
                    )
                alias_rows = await conn.execute(
                    sa.select(t.aliases)
                    .where(t.aliases.c.model_pk == row.id)
                    .order_by(t.aliases.c.alias)
                )
                for a in alias_rows:
                    alias = Alias(model.id, a.alias, a.version, _utc(a.update_time))
                    events.append(
                        WatchEvent(
                            EventType.PUT,
                            a.mod_revision,
                            Kind.ALIAS,
                            names.alias_name(model.id, a.alias),
                            alias,
                        )
                    )
            for row in await conn.execute(sa.select(t.deployments).order_by(t.deployments.c.name)):
                dep = await self._row_to_deployment(conn, row)
                events.append(
                    WatchEvent(
                        EventType.PUT,
                        row.mod_revision,
                        Kind.DEPLOYMENT,
                        f"deployments/{dep.id}",
                        dep,
                    )
                )
            for row in await conn.execute(sa.select(t.endpoints).order_by(t.endpoints.c.name)):
                ep = await self._row_to_endpoint(conn, row)
                events.append(
                    WatchEvent(
                        EventType.PUT, row.mod_revision, Kind.ENDPOINT, f"endpoints/{ep.id}", ep
                    )
                )
        return revision, events

    async def changes_after(self, revision: int, limit: int) -> tuple[list[WatchEvent], int]:
        """Changes with revision > `revision` (at most `limit`), and the compacted revision."""
        async with self.db.read() as conn:
            compacted = int(
                await conn.scalar(sa.select(t.registry_state.c.compacted_revision)) or 0
            )
            rows = await conn.execute(
                sa.select(t.changes)
                .where(t.changes.c.revision > revision)
                .order_by(t.changes.c.revision)
                .limit(limit)
            )
            events = [
                WatchEvent(
                    EventType(r.type),
                    int(r.revision),
                    Kind(r.kind),
                    r.name,
                    from_json(_RESOURCE_TYPES[Kind(r.kind)], r.payload),
                )
                for r in rows
            ]
        return events, compacted


_RESOURCE_TYPES: dict[Kind, type] = {
    Kind.MODEL: Model,
    Kind.MODEL_VERSION: ModelVersion,
    Kind.ALIAS: Alias,
    Kind.DEPLOYMENT: Deployment,
    Kind.ENDPOINT: Endpoint,
}
