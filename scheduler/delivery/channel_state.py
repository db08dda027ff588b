"""Completion per (occurrence, channel): each channel of a step is planned, fired, finished or
missed on its own, so sending one channel by hand ends nothing for the others.

    planned ──claim──► firing ──fanned out, nothing open──► done
       │                                    (and missed / cancelled, settled by the clock)
       └── its instant passed outside the catch-up window ──► missed

The occurrence is `done` once every channel of its step is final and one of them is done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from scheduler.store.db import dialect_insert, writer
from scheduler.store.reconnect import survives_connection_loss
from scheduler.store.schema import (
    ChannelState,
    DeliveryState,
    OccurrenceState,
    deliveries,
    occurrence_channels,
    occurrences,
    utcnow,
)

C = occurrence_channels.c
D = deliveries.c
O = occurrences.c  # noqa: E741

FINAL = (ChannelState.DONE.value, ChannelState.MISSED.value, ChannelState.CANCELLED.value)
OPEN_DELIVERY = (DeliveryState.PENDING.value, DeliveryState.SENDING.value)


@dataclass(frozen=True, slots=True)
class ChannelRow:
    occurrence_id: str
    channel: str
    state: str
    late: bool
    note: str | None
    fired_at: dt.datetime | None
    fanned_out_at: dt.datetime | None
    first_sent_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ChannelProgress:
    """What one channel of one occurrence has done: for `status`, `send` and the dashboard."""

    channel: str
    state: str  # planned, firing, done, missed or cancelled
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    pending: int = 0  # pending or being sent
    late: bool = False
    note: str | None = None
    fired_at: dt.datetime | None = None
    first_sent_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def still_planned(self) -> bool:
        return self.state == ChannelState.PLANNED.value

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "pending": self.pending,
            "late": self.late,
            "note": self.note,
            "fired_at": self.fired_at,
            "first_sent_at": self.first_sent_at,
            "finished_at": self.finished_at,
        }


def _row(r: Any) -> ChannelRow:
    m = r._mapping
    return ChannelRow(**{f: m[f] for f in ChannelRow.__slots__})


def ensure_rows(
    conn: Connection,
    occurrence_id: str,
    channels: Iterable[str],
    *,
    now: dt.datetime,
    state: ChannelState = ChannelState.PLANNED,
    note: str | None = None,
) -> None:
    """A row for each channel of the step; existing rows are left as they are."""
    values = [
        {
            "occurrence_id": occurrence_id,
            "channel": c,
            "state": state.value,
            "note": note,
            "created_at": now,
            "updated_at": now,
        }
        for c in channels
    ]
    if values:
        conn.execute(dialect_insert(conn, occurrence_channels).on_conflict_do_nothing(), values)


def claim(
    conn: Connection,
    occurrence_id: str,
    channels: Sequence[str],
    *,
    now: dt.datetime,
    late: bool,
    note: str | None,
    revive_missed: bool,
) -> list[str]:
    """Move the given channels from planned (or, by an organizer's hand, missed) to firing;
    returns the ones this call moved."""
    movable = [ChannelState.PLANNED.value]
    if revive_missed:
        movable.append(ChannelState.MISSED.value)
    moved = conn.execute(
        sa.update(occurrence_channels)
        .where(C.occurrence_id == occurrence_id, C.channel.in_(list(channels)))
        .where(C.state.in_(movable))
        .values(state=ChannelState.FIRING.value, late=late, note=note, fired_at=now, updated_at=now)
        .returning(C.channel)
    )
    return sorted(moved.scalars())


def settle_open(
    conn: Connection,
    occurrence_id: str,
    state: ChannelState,
    note: str,
    *,
    now: dt.datetime,
    channels: Sequence[str] | None = None,
) -> list[str]:
    """Put planned channels (and, for a cancel, firing ones) into a final state."""
    movable = [ChannelState.PLANNED.value]
    if state is ChannelState.CANCELLED:
        movable.append(ChannelState.FIRING.value)
    query = sa.update(occurrence_channels).where(
        C.occurrence_id == occurrence_id, C.state.in_(movable)
    )
    if channels is not None:
        query = query.where(C.channel.in_(list(channels)))
    moved = conn.execute(
        query.values(state=state.value, note=note, updated_at=now).returning(C.channel)
    )
    return sorted(moved.scalars())


@survives_connection_loss
def rows(engine: Engine, occurrence_ids: Iterable[str]) -> dict[str, dict[str, ChannelRow]]:
    """occurrence -> channel -> its row."""
    ids = list(occurrence_ids)
    if not ids:
        return {}
    out: dict[str, dict[str, ChannelRow]] = {}
    with engine.connect() as conn:
        for r in conn.execute(sa.select(occurrence_channels).where(C.occurrence_id.in_(ids))):
            row = _row(r)
            out.setdefault(row.occurrence_id, {})[row.channel] = row
    return out


def still_planned(channels: Sequence[str], known: Mapping[str, ChannelRow]) -> list[str]:
    """The step's channels nobody has fired yet (no row counts as planned: a channel added
    to the step after an earlier claim)."""
    return [c for c in channels if c not in known or known[c].state == ChannelState.PLANNED.value]


@survives_connection_loss
def mark_fanned_out(engine: Engine, occurrence_id: str, channel: str) -> None:
    now = utcnow()
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(occurrence_channels)
            .where(C.occurrence_id == occurrence_id, C.channel == channel)
            .values(fanned_out_at=sa.func.coalesce(C.fanned_out_at, now), updated_at=now)
        )


# The two questions asked after every batch, built once with parameters: building a
# statement and its cache key cost more of the client's CPU than running it (0.1-0.3 ms
# each a batch, measured); a statement kept is keyed once.
_OPEN_IN_CHANNEL = sa.select(
    sa.select(sa.literal(1))
    .where(
        D.occurrence_id == sa.bindparam("p_occurrence"),
        D.state.in_(OPEN_DELIVERY),
        D.channel == sa.bindparam("p_channel"),
    )
    .exists()
)
_FIRING = sa.select(C.channel, C.fanned_out_at, C.first_sent_at).where(
    C.occurrence_id == sa.bindparam("p_occurrence"), C.state == ChannelState.FIRING.value
)


def _open_in_channel(conn: Connection, occurrence_id: str, channel: str) -> bool:
    """Some delivery of the occurrence's `channel` is not final yet."""
    return bool(
        conn.scalar(_OPEN_IN_CHANNEL, {"p_occurrence": occurrence_id, "p_channel": channel})
    )


def _note_first_sent(conn: Connection, occurrence_id: str, now: dt.datetime) -> None:
    """Record when each firing channel first really sent something (the archive's date).
    Only while it is unknown, and only once the occurrence has a sent delivery, so this
    costs one index probe per batch after that."""
    waiting = conn.execute(
        sa.select(C.channel).where(
            C.occurrence_id == occurrence_id,
            C.state == ChannelState.FIRING.value,
            C.first_sent_at.is_(None),
        )
    ).scalars()
    for channel in list(waiting):
        first = conn.scalar(
            sa.select(sa.func.min(D.sent_at)).where(
                D.occurrence_id == occurrence_id,
                D.channel == channel,
                D.state == DeliveryState.SENT.value,
            )
        )
        if first is not None:
            if isinstance(first, dt.datetime) and first.tzinfo is None:
                first = first.replace(tzinfo=dt.UTC)
            conn.execute(
                sa.update(occurrence_channels)
                .where(C.occurrence_id == occurrence_id, C.channel == channel)
                .values(first_sent_at=first, updated_at=now)
            )


def finish(engine: Engine, occurrence_id: str) -> bool:
    """Channels fanned out with nothing left open become `done`; the occurrence becomes
    `done` when every channel is final. True if the occurrence finished in this call.

    Called after every batch: an EXISTS per firing channel, stopping at the first open row.
    """
    if _nothing_to_finish(engine, occurrence_id):
        return False
    now = utcnow()
    with writer(engine).begin() as conn:
        firing = _firing(conn, occurrence_id)
        if any(first is None for _, _, first in firing):
            _note_first_sent(conn, occurrence_id, now)
        for channel, fanned_out_at, _ in firing:
            if fanned_out_at is None or _open_in_channel(conn, occurrence_id, channel):
                continue
            conn.execute(
                sa.update(occurrence_channels)
                .where(
                    C.occurrence_id == occurrence_id,
                    C.channel == channel,
                    C.state == ChannelState.FIRING.value,
                )
                .values(state=ChannelState.DONE.value, finished_at=now, updated_at=now)
            )
        return _finish_occurrence(conn, occurrence_id, now)


def _firing(
    conn: Connection, occurrence_id: str
) -> list[tuple[str, dt.datetime | None, dt.datetime | None]]:
    """(channel, fanned_out_at, first_sent_at) of each channel of the occurrence still firing."""
    rows = conn.execute(_FIRING, {"p_occurrence": occurrence_id})
    return [(channel, fanned, first) for channel, fanned, first in rows]


def _nothing_to_finish(engine: Engine, occurrence_id: str) -> bool:
    """The usual answer after a batch, found without the write lock (one writer at a time
    on SQLite: every sender process would queue for it after every batch): some channel is
    still firing, and every firing one has its first send recorded and is still being
    fanned out (`finish` leaves such a channel firing) or has deliveries open."""
    with engine.connect() as conn:
        firing = _firing(conn, occurrence_id)
        if not firing or any(first is None for _, _, first in firing):
            return False
        # A channel being fanned out asks nothing more: the batches sent during a large
        # fan-out each took the write transaction of `finish` for nothing.
        return all(
            fanned_out_at is None or _open_in_channel(conn, occurrence_id, channel)
            for channel, fanned_out_at, _ in firing
        )


def _finish_occurrence(conn: Connection, occurrence_id: str, now: dt.datetime) -> bool:
    states = set(conn.execute(sa.select(C.state).where(C.occurrence_id == occurrence_id)).scalars())
    if not states or not states <= set(FINAL):
        return False
    final = OccurrenceState.DONE if ChannelState.DONE.value in states else OccurrenceState.MISSED
    done = conn.execute(
        sa.update(occurrences)
        .where(O.id == occurrence_id, O.state == OccurrenceState.FIRING.value)
        .values(state=final.value, finished_at=now, updated_at=now)
        .returning(O.id)
    ).first()
    return done is not None


def progress(
    engine: Engine,
    occurrence_ids: Iterable[str],
    *,
    step_channels: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[ChannelProgress]]:
    """occurrence -> the progress of each of its channels, in the step's order when
    `step_channels` gives it (channels of the step with no row yet show as planned)."""
    ids = list(occurrence_ids)
    if not ids:
        return {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    query = (
        sa.select(D.occurrence_id, D.channel, D.state, sa.func.count())
        .where(D.occurrence_id.in_(ids))
        .group_by(D.occurrence_id, D.channel, D.state)
    )
    with engine.connect() as conn:
        for occ, channel, state, n in conn.execute(query):
            counts.setdefault(occ, {}).setdefault(channel, {})[state] = int(n)
    known = rows(engine, ids)
    out: dict[str, list[ChannelProgress]] = {}
    for occ_id in ids:
        by_channel = known.get(occ_id, {})
        names = list((step_channels or {}).get(occ_id, ()))
        names += [
            c for c in sorted(set(by_channel) | set(counts.get(occ_id, {}))) if c not in names
        ]
        items = []
        for channel in names:
            row = by_channel.get(channel)
            n = counts.get(occ_id, {}).get(channel, {})
            items.append(
                ChannelProgress(
                    channel=channel,
                    state=row.state if row else ChannelState.PLANNED.value,
                    sent=n.get("sent", 0),
                    failed=n.get("failed", 0),
                    skipped=n.get("skipped", 0),
                    pending=n.get("pending", 0) + n.get("sending", 0),
                    late=row.late if row else False,
                    note=row.note if row else None,
                    fired_at=row.fired_at if row else None,
                    first_sent_at=row.first_sent_at if row else None,
                    finished_at=row.finished_at if row else None,
                )
            )
        out[occ_id] = items
    return out


def occurrence_progress(
    engine: Engine, occurrence_id: str, channels: Sequence[str] = ()
) -> list[ChannelProgress]:
    """The per-channel progress of one occurrence; `channels` are its step's channels."""
    return progress(engine, [occurrence_id], step_channels={occurrence_id: channels})[occurrence_id]
