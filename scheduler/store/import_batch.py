"""What both import paths (SQLite in `subscribers`, PostgreSQL in `pg_import`) share."""

from __future__ import annotations

import json
from collections.abc import Mapping

import sqlalchemy as sa

from scheduler.audience.csvfile import SubscriberRow
from scheduler.store.schema import SuppressionReason

# One batch of an import, each address once: address_key -> (the address normalized, row).
Batch = dict[str, tuple[str, SubscriberRow]]

_JSON_CACHE_SIZE = 4096
_json_cache: dict[tuple[tuple[str, object], ...], str] = {}


def attributes_json(attributes: Mapping[str, object]) -> str:
    """`json.dumps(attributes)`, remembered: a list's rows share a few attribute values (a
    chapter, a city), and encoding each row's anew cost more than the database's work."""
    if not attributes:
        return "{}"
    key = tuple(attributes.items())
    try:
        text = _json_cache.get(key)
    except TypeError:  # a value that is not a string (and cannot be a key): not remembered
        return json.dumps(dict(attributes))
    if text is None:
        text = json.dumps(dict(attributes))
        if len(_json_cache) >= _JSON_CACHE_SIZE:
            _json_cache.clear()
        _json_cache[key] = text
    return text


# One probe of the partial index ix_suppressions_erased (migration 0014).
_ANYONE_ERASED = (
    f"SELECT 1 FROM suppressions WHERE reason = '{SuppressionReason.FORGOTTEN.value}' LIMIT 1"
)


def anyone_erased(conn: sa.Connection) -> bool:
    """Whether any person was erased: an erasure leaves a keyed hash of the address in
    suppressions, and only then is each imported address's hash worth working out (an
    HMAC a row)."""
    return conn.exec_driver_sql(_ANYONE_ERASED).first() is not None
