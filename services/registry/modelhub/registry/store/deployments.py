"""Deployments: which versions of a model run where, on how many replicas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.db import shielded
from modelhub.common.serving import BatchingConfig, Device, RuntimeConfig
from modelhub.registry.jsoncodec import to_json
from modelhub.registry.resources import Deployment, Kind, VersionSelector
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import StoreBase, Tx, decode
from modelhub.registry.store.policies import Policy
from modelhub.registry.store.records import PolicyRow
from modelhub.registry.store.refs import resolve_current, resolve_selector


@dataclass
class StoredDeployment:
    """What a deployment row stores as JSON (everything but identity and labels); not the
    contract's `DeploymentSpec`, which is what the other services read."""

    model: str
    versions: list[VersionSelector]
    instance_count: int
    device: Device
    batching: BatchingConfig
    runtime: RuntimeConfig


async def _to_deployment(conn: AsyncConnection, row: PolicyRow) -> Deployment:
    spec = decode(StoredDeployment, row.spec)
    versions = [await resolve_current(conn, spec.model, s) for s in spec.versions]
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
        create_time=row.create_time,
        update_time=row.update_time,
        etag=str(row.mod_revision),
    )


DEPLOYMENTS = Policy(Kind.DEPLOYMENT, "deployment", t.deployments, _to_deployment)


async def _write(tx: Tx, dep: Deployment, pk: int | None) -> Deployment:
    refs = [
        await resolve_selector(tx.conn, dep.model, selector, f"deployment.versions[{i}]")
        for i, selector in enumerate(dep.versions)
    ]
    spec = StoredDeployment(
        model=dep.model,
        versions=[replace(s, resolved_version=0) for s in dep.versions],
        instance_count=dep.instance_count,
        device=dep.device,
        batching=dep.batching,
        runtime=dep.runtime,
    )
    values = {"model_pk": refs[0][0], "spec": to_json(spec), "labels": dep.labels}
    return await DEPLOYMENTS.store(tx, dep.id, values, refs, pk)


class DeploymentStore(StoreBase):
    @shielded
    async def create_deployment(self, dep: Deployment) -> Deployment:
        async def body(tx: Tx) -> Deployment:
            await DEPLOYMENTS.check_absent(tx.conn, dep.id)
            return await _write(tx, dep, None)

        return await self._write(body)

    @shielded
    async def get_deployment(self, name: str) -> Deployment:
        async with self.db.read() as conn:
            return await DEPLOYMENTS.load(conn, name)

    @shielded
    async def list_deployments(
        self, limit: int, after: str | None, model: str
    ) -> tuple[list[Deployment], bool]:
        async with self.db.read() as conn:
            return await DEPLOYMENTS.page(conn, limit, after, model)

    @shielded
    async def update_deployment(
        self, name: str, mutate: Callable[[Deployment], Deployment], etag: str
    ) -> Deployment:
        async def body(tx: Tx) -> Deployment:
            current, pk = await DEPLOYMENTS.lock_current(tx, name, etag)
            return await _write(tx, mutate(current), pk)

        return await self._write(body)

    @shielded
    async def delete_deployment(self, name: str, etag: str) -> None:
        async def body(tx: Tx) -> None:
            await DEPLOYMENTS.delete(tx, name, etag)

        await self._write(body)
