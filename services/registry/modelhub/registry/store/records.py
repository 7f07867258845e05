"""Typed records of the registry's table rows (SQLAlchemy Core rows are untyped): each
query's row becomes one of these where it is read, so the rest of the store is typed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from modelhub.registry.store.base import utc


@dataclass(frozen=True)
class ModelRow:
    """A `models` row."""

    id: int
    name: str
    uid: str
    description: str
    labels: dict[str, str]
    last_version: int
    create_time: datetime
    update_time: datetime
    mod_revision: int

    @classmethod
    def of(cls, row: sa.Row[Any]) -> ModelRow:
        return cls(
            id=int(row.id),
            name=str(row.name),
            uid=str(row.uid),
            description=str(row.description),
            labels=dict(row.labels),
            last_version=int(row.last_version),
            create_time=utc(row.create_time),
            update_time=utc(row.update_time),
            mod_revision=int(row.mod_revision),
        )


@dataclass(frozen=True)
class VersionRow:
    """A `model_versions` row; JSON columns as stored (decoded into resources later)."""

    id: int
    model_pk: int
    version: int
    uid: str
    status: str
    description: str
    author: str
    source: object
    metadata: dict[str, str]
    sha256: str
    size_bytes: int
    format: str
    schema: object
    data_profile: dict[str, Any] | None
    derivation: object
    evaluation: dict[str, Any] | None
    create_time: datetime
    update_time: datetime
    mod_revision: int

    @classmethod
    def of(cls, row: sa.Row[Any]) -> VersionRow:
        return cls(
            id=int(row.id),
            model_pk=int(row.model_pk),
            version=int(row.version),
            uid=str(row.uid),
            status=str(row.status),
            description=str(row.description),
            author=str(row.author),
            source=row.source,
            metadata=dict(row.metadata),
            sha256=str(row.sha256),
            size_bytes=int(row.size_bytes),
            format=str(row.format),
            schema=row.schema,
            data_profile=row.data_profile,
            derivation=row.derivation,
            evaluation=row.evaluation,
            create_time=utc(row.create_time),
            update_time=utc(row.update_time),
            mod_revision=int(row.mod_revision),
        )


@dataclass(frozen=True)
class PolicyRow:
    """A `deployments` or `endpoints` row: a name, a JSON spec, labels."""

    id: int
    name: str
    uid: str
    spec: object
    labels: dict[str, str]
    create_time: datetime
    update_time: datetime
    mod_revision: int

    @classmethod
    def of(cls, row: sa.Row[Any]) -> PolicyRow:
        return cls(
            id=int(row.id),
            name=str(row.name),
            uid=str(row.uid),
            spec=row.spec,
            labels=dict(row.labels),
            create_time=utc(row.create_time),
            update_time=utc(row.update_time),
            mod_revision=int(row.mod_revision),
        )
