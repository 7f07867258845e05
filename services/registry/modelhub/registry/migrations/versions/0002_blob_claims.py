"""blob claims: artifacts being committed, protected from other replicas' cleanup

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_claims",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_claims")),
    )
    with op.batch_alter_table("blob_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blob_claims_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blob_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blob_claims_sha256"))
    op.drop_table("blob_claims")
