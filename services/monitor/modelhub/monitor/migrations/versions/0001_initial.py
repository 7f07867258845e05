"""Initial schema: alert rules, baselines, drift configs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitor_alert_rules",
        sa.Column("rule_id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("series_model", sa.String(80), nullable=False),
        sa.Column("series_version", sa.BigInteger(), nullable=False),
        sa.Column("series_endpoint", sa.String(80), nullable=False),
        sa.Column("series_variant", sa.String(128), nullable=False),
        sa.Column("series_source", sa.String(16), nullable=False),
        sa.Column("comparator", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("for_seconds", sa.Double(), nullable=False),
        sa.Column("webhook_url", sa.String(2048), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
    )
    op.create_table(
        "monitor_baselines",
        sa.Column("model", sa.String(80), primary_key=True),
        sa.Column("version", sa.BigInteger(), primary_key=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_drift_configs",
        sa.Column("model", sa.String(80), primary_key=True),
        sa.Column("psi", sa.Double(), nullable=False),
        sa.Column("js", sa.Double(), nullable=False),
        sa.Column("ks", sa.Double(), nullable=False),
        sa.Column("min_samples", sa.BigInteger(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_drift_configs")
    op.drop_table("monitor_baselines")
    op.drop_table("monitor_alert_rules")
