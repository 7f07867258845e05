"""The change feed behind Watch: the current state as events, and the changes after a
revision."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.db import shielded
from modelhub.common.errors import InternalError
from modelhub.registry import names
from modelhub.registry.resources import (
    Alias,
    Deployment,
    Endpoint,
    EventType,
    Kind,
    Model,
    ModelVersion,
    Resource,
    WatchEvent,
)
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import StoreBase, decode, utc
from modelhub.registry.store.deployments import DEPLOYMENTS
from modelhub.registry.store.endpoints import ENDPOINTS
from modelhub.registry.store.policies import Policy, R
from modelhub.registry.store.reads import model_tags, to_model, versions_of
from modelhub.registry.store.records import ModelRow, PolicyRow

_RESOURCE_TYPES: dict[Kind, type[Resource]] = {
    Kind.MODEL: Model,
    Kind.MODEL_VERSION: ModelVersion,
    Kind.ALIAS: Alias,
    Kind.DEPLOYMENT: Deployment,
    Kind.ENDPOINT: Endpoint,
}


def _resource(kind: Kind, payload: object) -> Resource:
    resource: object = decode(_RESOURCE_TYPES[kind], payload)
    if not isinstance(resource, Model | ModelVersion | Alias | Deployment | Endpoint):
        raise InternalError(f"a stored {kind} change cannot be read back")
    return resource


async def _model_events(conn: AsyncConnection, row: ModelRow, tags: list[str]) -> list[WatchEvent]:
    """PUT events of a model, its versions and its aliases."""
    model = to_model(row, tags)
    events = [
        WatchEvent(EventType.PUT, row.mod_revision, Kind.MODEL, names.model_name(model.id), model)
    ]
    for version in await versions_of(conn, row.id):
        name = names.version_name(model.id, version.version)
        events.append(
            WatchEvent(EventType.PUT, int(version.etag), Kind.MODEL_VERSION, name, version)
        )
    alias_rows = await conn.execute(
        sa.select(t.aliases).where(t.aliases.c.model_pk == row.id).order_by(t.aliases.c.alias)
    )
    for a in alias_rows:
        alias = Alias(model.id, a.alias, a.version, utc(a.update_time))
        name = names.alias_name(model.id, a.alias)
        events.append(WatchEvent(EventType.PUT, int(a.mod_revision), Kind.ALIAS, name, alias))
    return events


async def _policy_events(conn: AsyncConnection, policy: Policy[R]) -> list[WatchEvent]:
    events = []
    table = policy.table
    for result in await conn.execute(sa.select(table).order_by(table.c.name)):
        row = PolicyRow.of(result)
        resource = await policy.to_resource(conn, row)
        name = policy.resource_name(row.name)
        events.append(WatchEvent(EventType.PUT, row.mod_revision, policy.kind, name, resource))
    return events


class WatchStore(StoreBase):
    @shielded
    async def state(self) -> tuple[int, int]:
        """(current revision, compacted revision)."""
        async with self.db.read() as conn:
            state = t.registry_state.c
            row = (await conn.execute(sa.select(state.revision, state.compacted_revision))).one()
            return int(row.revision), int(row.compacted_revision)

    @shielded
    async def snapshot(self) -> tuple[int, list[WatchEvent]]:
        """Every resource as a PUT event, and the revision this state is at."""
        async with self.db.read(snapshot=True) as conn:
            revision = int(await conn.scalar(sa.select(t.registry_state.c.revision)) or 0)
            events: list[WatchEvent] = []
            query = sa.select(t.models).order_by(t.models.c.name)
            model_rows = [ModelRow.of(row) for row in await conn.execute(query)]
            tags = await model_tags(conn, [r.id for r in model_rows])
            for row in model_rows:
                events += await _model_events(conn, row, tags[row.id])
            events += await _policy_events(conn, DEPLOYMENTS)
            events += await _policy_events(conn, ENDPOINTS)
        return revision, events

    @shielded
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
                    EventType[r.type],
                    int(r.revision),
                    Kind(r.kind),
                    r.name,
                    _resource(Kind(r.kind), r.payload),
                )
                for r in rows
            ]
        return events, compacted
