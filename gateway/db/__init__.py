"""PostgreSQL schema and migrations for the gateway (see :mod:`gateway.db.schema`)."""

from gateway.db.migrate import (
    MigrationError,
    StoragePreference,
    apply_migrations,
    ensure_partitions,
    existing_mode,
    migrate,
    run_lifecycle,
)
from gateway.db.schema import MIGRATIONS, READINGS_INSERT_COLUMNS, StorageMode

__all__ = [
    "MIGRATIONS",
    "READINGS_INSERT_COLUMNS",
    "MigrationError",
    "StorageMode",
    "StoragePreference",
    "apply_migrations",
    "ensure_partitions",
    "existing_mode",
    "migrate",
    "run_lifecycle",
]
