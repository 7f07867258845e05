"""Endpoints: the variants (and shadows) a request to a name is routed to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.db import shielded
from modelhub.registry.jsoncodec import to_json
from modelhub.registry.resources import AuditPolicy, Endpoint, Kind, Shadow, StickyKey, Variant
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import StoreBase, Tx, decode
from modelhub.registry.store.policies import Policy
from modelhub.registry.store.records import PolicyRow
from modelhub.registry.store.refs import resolve_current, resolve_selector


@dataclass
class StoredEndpoint:
    """What an endpoint row stores as JSON (everything but identity and labels); not the
    contract's `EndpointSpec`, which is what the other services read."""

    description: str
    sticky_key: StickyKey | None
    salt: str
    variants: list[Variant]
    shadows: list[Shadow]
    fallback: str
    # Absent in specs stored before the audit log existed.
    audit: AuditPolicy | None = None


async def _to_endpoint(conn: AsyncConnection, row: PolicyRow) -> Endpoint:
    spec = decode(StoredEndpoint, row.spec)
    variants = [
        replace(v, selector=await resolve_current(conn, v.model, v.selector)) for v in spec.variants
    ]
    shadows = [
        replace(s, selector=await resolve_current(conn, s.model, s.selector)) for s in spec.shadows
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
        create_time=row.create_time,
        update_time=row.update_time,
        etag=str(row.mod_revision),
    )


ENDPOINTS = Policy(Kind.ENDPOINT, "endpoint", t.endpoints, _to_endpoint)


async def _write(tx: Tx, ep: Endpoint, pk: int | None) -> Endpoint:
    refs = [
        await resolve_selector(tx.conn, v.model, v.selector, f"endpoint.variants[{i}]")
        for i, v in enumerate(ep.variants)
    ] + [
        await resolve_selector(tx.conn, s.model, s.selector, f"endpoint.shadows[{i}]")
        for i, s in enumerate(ep.shadows)
    ]
    spec = StoredEndpoint(
        description=ep.description,
        sticky_key=ep.sticky_key,
        salt=ep.salt,
        variants=[
            replace(v, selector=replace(v.selector, resolved_version=0)) for v in ep.variants
        ],
        shadows=[replace(s, selector=replace(s.selector, resolved_version=0)) for s in ep.shadows],
        fallback=ep.fallback,
        audit=ep.audit,
    )
    values = {"spec": to_json(spec), "labels": ep.labels}
    return await ENDPOINTS.store(tx, ep.id, values, refs, pk)


class EndpointStore(StoreBase):
    @shielded
    async def create_endpoint(self, ep: Endpoint) -> Endpoint:
        async def body(tx: Tx) -> Endpoint:
            await ENDPOINTS.check_absent(tx.conn, ep.id)
            return await _write(tx, ep, None)

        return await self._write(body)

    @shielded
    async def get_endpoint(self, name: str) -> Endpoint:
        async with self.db.read() as conn:
            return await ENDPOINTS.load(conn, name)

    @shielded
    async def list_endpoints(self, limit: int, after: str | None) -> tuple[list[Endpoint], bool]:
        async with self.db.read() as conn:
            return await ENDPOINTS.page(conn, limit, after)

    @shielded
    async def update_endpoint(
        self, name: str, mutate: Callable[[Endpoint], Endpoint], etag: str
    ) -> Endpoint:
        async def body(tx: Tx) -> Endpoint:
            current, pk = await ENDPOINTS.lock_current(tx, name, etag)
            return await _write(tx, mutate(current), pk)

        return await self._write(body)

    @shielded
    async def delete_endpoint(self, name: str, etag: str) -> None:
        async def body(tx: Tx) -> None:
            await ENDPOINTS.delete(tx, name, etag)

        await self._write(body)
