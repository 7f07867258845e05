"""Alembic migrations of the registry schema."""
