"""How many people a campaign's email reaches, for `scheduler plan`.

A send syncs each list's CSV `source` into the store first, so the prediction is: active
members in the store, plus CSV rows the store does not hold back (unsubscribed, bounced,
complained or suppressed addresses stay out), each address once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key
from scheduler.audience.csvfile import read_csv
from scheduler.config.project import Project
from scheduler.store.db import DEFAULT_URL, database_url, make_engine
from scheduler.store.schema import FINAL_STATUSES, memberships, subscribers, suppressions


@dataclass
class AudienceSizes:
    source: str
    active: dict[str, set[str]] = field(default_factory=dict)  # list -> address keys
    from_files: dict[str, set[str]] = field(default_factory=dict)
    # Keys a sync would not (re)add: per list (left it, bounced) and everywhere (suppressed).
    held_back: dict[str, set[str]] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)

    def recipients(self, lists: Iterable[str]) -> int:
        """Distinct addresses across the lists: someone on two lists gets one email."""
        union: set[str] = set()
        for name in lists:
            union |= self.active.get(name, set())
            union |= self.from_files.get(name, set()) - self.held_back.get(name, set())
        return len(union - self.suppressed)


def audience_sizes(project: Project) -> AudienceSizes:
    org = project.config.organization
    engine = _existing_store()
    sizes = AudienceSizes(source="the lists' CSV sources (no store yet)")
    if engine is not None:
        try:
            _from_store(engine, list(project.config.lists), sizes)
            sizes.source = "the store, plus the lists' CSV sources (synced before sending)"
        except sa.exc.SQLAlchemyError as e:
            sizes.source = (
                f"the lists' CSV sources (the store could not be read: {type(e).__name__})"
            )
        finally:
            engine.dispose()
    for name, mlist in project.config.lists.items():
        if mlist.source:
            path = project.base_dir / mlist.source
            if path.is_file():
                result = read_csv(
                    path, languages=org.languages, default_language=org.default_language
                )
                sizes.from_files[name] = {address_key(row.email) for row in result.rows}
    return sizes


def _existing_store() -> Engine | None:
    """The store, if there is one: planning must not create an empty database."""
    url = database_url()
    if url == DEFAULT_URL and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    return make_engine(url)


def _from_store(engine: Engine, lists: list[str], sizes: AudienceSizes) -> None:
    s, m = subscribers.c, memberships.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.list_name, s.email_key, m.status)
            .join(subscribers, s.id == m.subscriber_id)
            .where(m.list_name.in_(lists))
        )
        for list_name, key, status in rows:
            if status == "active":
                sizes.active.setdefault(list_name, set()).add(key)
            elif status in FINAL_STATUSES:
                sizes.held_back.setdefault(list_name, set()).add(key)
        sizes.suppressed = set(conn.execute(sa.select(suppressions.c.email_key)).scalars())
