"""Payload audit log: the audit records table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitor_audit_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(256), nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("endpoint", sa.String(80), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("model", sa.String(80), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("latency_s", sa.Double(), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("caller_role", sa.String(16), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_monitor_audit_records_time", "monitor_audit_records", ["time_us", "id"])
    op.create_index(
        "ix_monitor_audit_records_endpoint_time",
        "monitor_audit_records",
        ["endpoint", "time_us", "id"],
    )
    op.create_index("ix_monitor_audit_records_request_id", "monitor_audit_records", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_monitor_audit_records_request_id", table_name="monitor_audit_records")
    op.drop_index("ix_monitor_audit_records_endpoint_time", table_name="monitor_audit_records")
    op.drop_index("ix_monitor_audit_records_time", table_name="monitor_audit_records")
    op.drop_table("monitor_audit_records")
