"""Blob claims: artifacts placed in the shared blob folder whose version is not committed.

Replicas share one blob folder. A blob without a version row is either debris or an upload
between moving its blob into place and inserting its version; the claim tells the two
apart. Claims are taken and blobs deleted under the registry_state lock of a write
transaction, so a delete sees every claim taken before it, and a claim taken after it finds
the blob gone and moves its own file into place.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa

from modelhub.common.db import shielded
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import StoreBase, Tx


class ClaimStore(StoreBase):
    @shielded
    async def claim_blob(self, sha256: str) -> str:
        """Record that an upload is about to move the blob `sha256` into place; returns the
        claim, which `add_version` (or `drop_blob`) removes."""
        claim = uuid.uuid4().hex

        async def body(tx: Tx) -> None:
            await tx.conn.execute(
                t.blob_claims.insert().values(id=claim, sha256=sha256, create_time=tx.now)
            )

        await self._write(body)
        return claim

    @shielded
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

        async def body(tx: Tx) -> bool:
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

        return await self._write(body)

    @shielded
    async def expire_claims(self, grace: timedelta) -> int:
        """Remove claims older than `grace` (uploads that died between claim and version)."""

        async def body(tx: Tx) -> int:
            result = await tx.conn.execute(
                sa.delete(t.blob_claims).where(t.blob_claims.c.create_time <= tx.now - grace)
            )
            return int(result.rowcount or 0)

        return await self._write(body)
