"""Re-publishing the deployments and endpoints that follow an alias (or "latest") when
what it resolves to may have changed."""

from __future__ import annotations

import sqlalchemy as sa

from modelhub.registry.store import tables as t
from modelhub.registry.store.base import Tx
from modelhub.registry.store.deployments import DEPLOYMENTS
from modelhub.registry.store.endpoints import ENDPOINTS


async def touch_dependents(tx: Tx, model_pk: int) -> None:
    """Re-publish deployments/endpoints whose alias or latest selectors on this model may
    now resolve differently, so watchers see the new resolved versions."""
    refs = t.version_refs.c
    rows = await tx.conn.execute(
        sa.select(refs.owner_kind, refs.owner_name)
        .where(refs.model_pk == model_pk, refs.alias.is_not(None))
        .distinct()
    )
    for row in sorted(rows, key=lambda r: (r.owner_kind, r.owner_name)):
        if row.owner_kind == DEPLOYMENTS.what:
            await DEPLOYMENTS.republish(tx, row.owner_name)
        else:
            await ENDPOINTS.republish(tx, row.owner_name)
