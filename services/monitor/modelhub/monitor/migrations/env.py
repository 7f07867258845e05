"""Alembic environment of the monitor database (`modelhub.common.db.run_env`)."""

from __future__ import annotations

from modelhub.common.db import run_env
from modelhub.monitor.migrate import VERSION_TABLE
from modelhub.monitor.store import Base

run_env(Base.metadata, VERSION_TABLE)
