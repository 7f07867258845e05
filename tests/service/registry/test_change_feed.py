"""The change feed's stored rows keep their format with the contract's event types."""

from __future__ import annotations

import sqlalchemy as sa

from modelhub.common.contract import EventType
from modelhub.common.db import Database
from modelhub.registry.resources import Kind, Model
from modelhub.registry.store import tables as t
from modelhub.registry.store.store import RegistryStore


async def test_event_types_are_stored_by_name_and_read_back(database_url: str) -> None:
    db = Database.from_url(database_url, "registry")
    try:
        store = RegistryStore(db)
        await store.create_model(Model(id="fraud", uid=""))
        await store.delete_model("fraud", "")
        async with db.engine.connect() as conn:
            stored = [
                row.type
                for row in await conn.execute(
                    sa.select(t.changes.c.type).order_by(t.changes.c.revision)
                )
            ]
        # What the feed stored before the registry used the contract's (lowercase) values:
        # changes written by an older registry still read back.
        assert stored == ["PUT", "DELETE"]
        events, _ = await store.changes_after(0, 10)
        assert [(e.type, e.kind, e.name) for e in events] == [
            (EventType.PUT, Kind.MODEL, "models/fraud"),
            (EventType.DELETE, Kind.MODEL, "models/fraud"),
        ]
    finally:
        await db.close()
