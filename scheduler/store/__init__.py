"""Durable state in SQL (SQLite by default, PostgreSQL when machines share the work)."""

from scheduler.store.db import dialect_insert, make_engine, migrate, writer
from scheduler.store.subscribers import (
    ImportReport,
    Recipient,
    active_audience,
    import_rows,
    is_suppressed,
    list_counts,
    memberships_of,
    subscriber,
    suppress,
    unsubscribe,
)

__all__ = [
    "ImportReport",
    "Recipient",
    "active_audience",
    "dialect_insert",
    "import_rows",
    "is_suppressed",
    "list_counts",
    "make_engine",
    "memberships_of",
    "migrate",
    "subscriber",
    "suppress",
    "unsubscribe",
    "writer",
]
