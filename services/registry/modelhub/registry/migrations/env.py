"""Alembic environment of the registry database (`modelhub.common.db.run_env`)."""

from __future__ import annotations

from modelhub.common.db import run_env
from modelhub.registry.migrate import MIGRATIONS
from modelhub.registry.store.tables import metadata

run_env(metadata, MIGRATIONS.version_table)
