"""Occurrences held at their instant for want of an approval, until they fire or are missed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.calendar import Occurrence
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import holds, utcnow

H = holds.c


@dataclass(frozen=True, slots=True)
class Hold:
    occurrence_id: str
    campaign: str
    instant: dt.datetime
    held_at: dt.datetime
    released_at: dt.datetime | None
    outcome: str | None


def hold(engine: Engine, occ: Occurrence) -> bool:
    """Record that `occ` is held; True the first time (so the alert goes out once)."""
    with writer(engine).begin() as conn:
        added = conn.execute(
            dialect_insert(conn, holds)
            .values(
                occurrence_id=occ.id,
                campaign=occ.campaign_id,
                instant=occ.instant,
                held_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(H.occurrence_id)
        ).first()
    return added is not None


def release(engine: Engine, occurrence_id: str, outcome: str) -> bool:
    """Close an open hold: the occurrence fired (`fired`) or was recorded missed (`missed`)."""
    with writer(engine).begin() as conn:
        done = conn.execute(
            sa.update(holds)
            .where(H.occurrence_id == occurrence_id, H.released_at.is_(None))
            .values(released_at=utcnow(), outcome=outcome)
            .returning(H.occurrence_id)
        ).first()
    return done is not None


def open_holds(engine: Engine) -> list[Hold]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(holds).where(H.released_at.is_(None)).order_by(H.instant))
        return [
            Hold(r.occurrence_id, r.campaign, r.instant, r.held_at, r.released_at, r.outcome)
            for r in rows
        ]


def get(engine: Engine, occurrence_id: str) -> Hold | None:
    with engine.connect() as conn:
        r = conn.execute(sa.select(holds).where(H.occurrence_id == occurrence_id)).first()
    if r is None:
        return None
    return Hold(r.occurrence_id, r.campaign, r.instant, r.held_at, r.released_at, r.outcome)
