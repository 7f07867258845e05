"""Which deployments and endpoints select which model versions (`version_refs`): resolving
their selectors, storing the references, and "who uses this model/version/alias?"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.common.errors import InvalidArgumentError
from modelhub.registry import names
from modelhub.registry.names import LATEST
from modelhub.registry.resources import VersionSelector, VersionStatus
from modelhub.registry.store import tables as t
from modelhub.registry.store.base import Tx
from modelhub.registry.store.reads import model_pk, resolve_alias


async def _check_deployable(
    conn: AsyncConnection, model: str, pk: int, version: int, field: str
) -> None:
    status = await conn.scalar(
        sa.select(t.model_versions.c.status).where(
            t.model_versions.c.model_pk == pk, t.model_versions.c.version == version
        )
    )
    if status is None:
        raise InvalidArgumentError(f"model {model!r} has no version {version}", field=field)
    if status != VersionStatus.READY.value:
        raise InvalidArgumentError(
            f"{names.version_name(model, version)} is {status}; only READY "
            "versions can be deployed or routed to",
            field=field,
        )


async def resolve_selector(
    conn: AsyncConnection, model: str, selector: VersionSelector, field: str
) -> tuple[int, VersionSelector]:
    """(model pk, selector with resolved_version); InvalidArgument when it resolves to
    nothing usable."""
    pk = await model_pk(conn, model)
    if pk is None:
        raise InvalidArgumentError(f"model {model!r} does not exist", field=field)
    if selector.version is not None:
        await _check_deployable(conn, model, pk, selector.version, field)
        number: int | None = selector.version
    else:
        alias = selector.alias or LATEST
        number = await resolve_alias(conn, pk, alias)
        if number is None:
            what = "no READY version" if alias == LATEST else f"no alias {alias!r}"
            raise InvalidArgumentError(f"model {model!r} has {what}", field=field)
    assert number is not None
    return pk, replace(selector, resolved_version=number)


async def resolve_current(
    conn: AsyncConnection, model: str, selector: VersionSelector
) -> VersionSelector:
    """Resolution at read time; 0 when the selected version has gone."""
    try:
        _, resolved = await resolve_selector(conn, model, selector, "")
    except InvalidArgumentError:
        return replace(selector, resolved_version=0)
    return resolved


async def save_refs(
    tx: Tx, kind: str, owner: str, refs: Iterable[tuple[int, VersionSelector]]
) -> None:
    """Replace the references of deployment/endpoint `owner` (`kind`: "deployment"...)."""
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


async def _users_of_version(conn: AsyncConnection, model_pk: int, version: int) -> list[str]:
    """Users by number, plus users whose alias/latest selector resolves to it now."""
    users = []
    for row in await conn.execute(
        sa.select(t.version_refs).where(t.version_refs.c.model_pk == model_pk)
    ):
        selected = row.version
        if selected is None:
            selected = await resolve_alias(conn, model_pk, row.alias or LATEST)
        if selected == version:
            users.append(f"{row.owner_kind}s/{row.owner_name}")
    return users


async def users(
    conn: AsyncConnection,
    model_pk: int,
    version: int | None = None,
    alias: str | None = None,
) -> list[str]:
    """Deployments/endpoints selecting this model (optionally: this version or alias), as
    sorted resource names."""
    if version is not None:
        return sorted(set(await _users_of_version(conn, model_pk, version)))
    query = sa.select(t.version_refs.c.owner_kind, t.version_refs.c.owner_name).where(
        t.version_refs.c.model_pk == model_pk
    )
    if alias is not None:
        query = query.where(t.version_refs.c.alias == alias)
    rows = await conn.execute(query.distinct())
    return sorted({f"{r.owner_kind}s/{r.owner_name}" for r in rows})
