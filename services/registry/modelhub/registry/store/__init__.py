"""Registry persistence: SQLAlchemy Core tables and `RegistryStore` (store.py lists its
parts). The engine, transactions and schema check are `modelhub.common.db`."""
