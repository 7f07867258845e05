"""Registry tables (SQLAlchemy Core). Alembic migrations must produce exactly this schema;
tests/service/registry/test_migrations.py fails when they diverge."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)

# One row: the registry-wide revision counter. Every write transaction locks it first, so
# revisions are handed out in commit order (a watcher never sees revision n+1 before n).
registry_state = sa.Table(
    "registry_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    # Changes with a revision <= this have been compacted away.
    sa.Column("compacted_revision", sa.BigInteger, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    # Highest version number handed out; incremented under the row lock (no gaps/dups).
    sa.Column("last_version", sa.Integer, nullable=False),
    sa.Column("create_time", TS, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("mod_revision", sa.BigInteger, nullable=False),
)

model_tags = sa.Table(
    "model_tags",
    metadata,
    sa.Column(
        "model_pk", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tag", sa.String(63), primary_key=True, index=True),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "model_pk", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("author", sa.String(256), nullable=False),
    sa.Column("source", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("data_profile", sa.JSON, nullable=True),
    # Optimized derivatives: lineage (parent, method) and the evaluation report.
    sa.Column("derivation", sa.JSON, nullable=True),
    sa.Column("evaluation", sa.JSON, nullable=True),
    sa.Column("create_time", TS, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("mod_revision", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("model_pk", "version"),
)

version_tags = sa.Table(
    "version_tags",
    metadata,
    sa.Column(
        "version_pk",
        sa.Integer,
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tag", sa.String(63), primary_key=True, index=True),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "model_pk", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("alias", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("mod_revision", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("model_pk", "alias"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),
    sa.Column("model_pk", sa.Integer, sa.ForeignKey("models.id"), nullable=False, index=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("create_time", TS, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("mod_revision", sa.BigInteger, nullable=False),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("create_time", TS, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("mod_revision", sa.BigInteger, nullable=False),
)

# Which deployment/endpoint selects which model version (by number, or by alias; alias
# "latest" = newest READY). Answers "is this version/alias/model in use?" and "whose
# resolved versions change when this alias moves?" without scanning specs.
version_refs = sa.Table(
    "version_refs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_kind", sa.String(16), nullable=False),
    sa.Column("owner_name", sa.String(63), nullable=False),
    sa.Column("model_pk", sa.Integer, sa.ForeignKey("models.id"), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("alias", sa.String(63), nullable=True),
    sa.Index(None, "owner_kind", "owner_name"),
)

# The change feed behind Watch: one row per change, in revision order.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("type", sa.String(8), nullable=False),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("create_time", TS, nullable=False),
)

# Artifacts placed in the shared blob folder whose version row is not committed yet. A
# replica deletes an unreferenced blob only under the registry_state lock and only when no
# claim younger than the grace period names it; an upload claims its digest (under the same
# lock) before it moves the blob into place, and its version insert drops the claim.
blob_claims = sa.Table(
    "blob_claims",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("create_time", TS, nullable=False),
)
