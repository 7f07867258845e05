"""Registry persistence: SQLAlchemy tables, the database handle and the store."""
