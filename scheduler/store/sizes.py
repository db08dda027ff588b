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
    # Each address's time zone (a CSV's `timezone` column wins, as a sync makes it).
    zones: dict[str, str | None] = field(default_factory=dict)

    def _union(self, lists: Iterable[str]) -> set[str]:
        union: set[str] = set()
        for name in lists:
            union |= self.active.get(name, set())
            union |= self.from_files.get(name, set()) - self.held_back.get(name, set())
        return union - self.suppressed

    def recipients(self, lists: Iterable[str]) -> int:
        """Distinct addresses across the lists: someone on two lists gets one email."""
        return len(self._union(lists))

    def by_zone(self, lists: Iterable[str]) -> dict[str | None, int]:
        """The recipients by time zone (None: no timezone): a local-time step's waves."""
        counts: dict[str | None, int] = {}
        for key in self._union(lists):
            zone = self.zones.get(key)
            counts[zone] = counts.get(zone, 0) + 1
        return counts


def audience_sizes(project: Project, store: Engine | None = None) -> AudienceSizes:
    """The audience as a send would see it; `store`: this engine (the clock's), not the
    configured database opened for the occasion."""
    engine = store or _existing_store()
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
            if store is None:
                engine.dispose()
    for name, mlist in project.config.lists.items():
        if mlist.source:
            path = project.base_dir / mlist.source
            if path.is_file():
                voice = project.config.list_voice(name)  # a chapter's list: its languages
                result = read_csv(
                    path, languages=list(voice.languages), default_language=voice.default_language
                )
                sizes.from_files[name] = {address_key(row.email) for row in result.rows}
                for row in result.rows:
                    if row.timezone:
                        sizes.zones[address_key(row.email)] = row.timezone
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
            sa.select(m.list_name, s.email_key, m.status, s.timezone)
            .join(subscribers, s.id == m.subscriber_id)
            .where(m.list_name.in_(lists))
        )
        for list_name, key, status, zone in rows:
            sizes.zones.setdefault(key, zone)
            if status == "active":
                sizes.active.setdefault(list_name, set()).add(key)
            elif status in FINAL_STATUSES:
                sizes.held_back.setdefault(list_name, set()).add(key)
        sizes.suppressed = set(conn.execute(sa.select(suppressions.c.email_key)).scalars())
