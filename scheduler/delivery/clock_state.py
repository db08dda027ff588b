"""What the clock keeps in the store: pauses, cancellations, missed occurrences, last seen.

Beside the ledger, not in `clock/`: organizers pause, resume and cancel through it from the
command line and the web too, which sit above the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.calendar import Occurrence
from scheduler.delivery import channel_state
from scheduler.delivery.channel_state import ChannelRow
from scheduler.delivery.ledger import OccurrenceRow, _occurrence_row, add_occurrence
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import (
    ChannelState,
    OccurrenceState,
    clock_state,
    occurrences,
    pauses,
    utcnow,
)

O = occurrences.c  # noqa: E741
LAST_SEEN = "last_seen"


def last_seen(engine: Engine) -> dt.datetime | None:
    with engine.connect() as conn:
        value = conn.scalar(sa.select(clock_state.c.value).where(clock_state.c.key == LAST_SEEN))
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value if isinstance(value, dt.datetime) else None


def mark_seen(engine: Engine, now: dt.datetime) -> None:
    with writer(engine).begin() as conn:
        insert = dialect_insert(conn, clock_state)
        conn.execute(
            insert.values(key=LAST_SEEN, value=now, updated_at=utcnow()).on_conflict_do_update(
                index_elements=["key"], set_={"value": now, "updated_at": utcnow()}
            )
        )


def paused(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(pauses.c.campaign)).scalars())


def pause(engine: Engine, campaign: str, note: str | None = None) -> bool:
    with writer(engine).begin() as conn:
        insert = dialect_insert(conn, pauses)
        added = conn.execute(
            insert.values(campaign=campaign, note=note, paused_at=utcnow())
            .on_conflict_do_nothing()
            .returning(pauses.c.campaign)
        ).first()
    return added is not None


def resume(engine: Engine, campaign: str) -> bool:
    with writer(engine).begin() as conn:
        gone = conn.execute(
            sa.delete(pauses).where(pauses.c.campaign == campaign).returning(pauses.c.campaign)
        ).first()
    return gone is not None


def known(engine: Engine, ids: Iterable[str]) -> dict[str, OccurrenceRow]:
    wanted = list(ids)
    if not wanted:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(occurrences).where(O.id.in_(wanted)))
        return {r.id: _occurrence_row(r) for r in rows}


def firing(engine: Engine) -> list[OccurrenceRow]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(occurrences).where(O.state == OccurrenceState.FIRING.value))
        return [_occurrence_row(r) for r in rows]


def planned(engine: Engine) -> list[OccurrenceRow]:
    """Occurrences recorded before firing (blocked at their instant): the sweep looks again."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(occurrences).where(O.state == OccurrenceState.PLANNED.value))
        return [_occurrence_row(r) for r in rows]


def record_blocked(engine: Engine, occ: Occurrence, note: str) -> bool:
    """Say why an occurrence whose instant has come is not sent (yet); True the first time.

    It stays `planned`, so a fix inside its catch-up window fires it (late) and the window
    running out records it missed.
    """
    now = utcnow()
    with writer(engine).begin() as conn:
        added = add_occurrence(conn, occ, OccurrenceState.PLANNED, note, now)
        if not added:
            conn.execute(
                sa.update(occurrences)
                .where(
                    O.id == occ.id,
                    O.state == OccurrenceState.PLANNED.value,
                    sa.or_(O.note.is_(None), O.note != note),
                )
                .values(note=note, updated_at=now)
            )
    return added


def _settle(
    engine: Engine,
    occ: Occurrence,
    state: OccurrenceState,
    note: str,
    channels: Sequence[str] | None = None,
) -> bool:
    """Put an occurrence that has not fired into a final state, or (`channels`) only those of
    its channels still planned, when others went out by hand; True if this call did."""
    now = utcnow()
    final = ChannelState(state.value)
    with writer(engine).begin() as conn:
        if add_occurrence(conn, occ, state, note, now):
            channel_state.ensure_rows(conn, occ.id, occ.channels, now=now, state=final, note=note)
            return True
        channel_state.ensure_rows(conn, occ.id, occ.channels, now=now)
        if channels is not None:
            moved = channel_state.settle_open(conn, occ.id, final, note, now=now, channels=channels)
        else:
            # Planned (or, for a cancel, firing) rows move on; final ones stay as they are.
            movable = [OccurrenceState.PLANNED.value]
            if state is OccurrenceState.CANCELLED:
                movable.append(OccurrenceState.FIRING.value)
            whole = conn.execute(
                sa.update(occurrences)
                .where(O.id == occ.id, O.state.in_(movable))
                .values(state=state.value, note=note, updated_at=now)
                .returning(O.id)
            ).first()
            if whole is None:
                return False
            channel_state.settle_open(conn, occ.id, final, note, now=now)
            return True
    if moved:
        channel_state.finish(engine, occ.id)  # the others may all be final now
    return bool(moved)


def record_missed(
    engine: Engine, occ: Occurrence, note: str, channels: Sequence[str] | None = None
) -> bool:
    """Record the occurrence missed, or only `channels` of it (the others went out)."""
    return _settle(engine, occ, OccurrenceState.MISSED, note, channels)


def cancel(engine: Engine, occ: Occurrence, note: str = "cancelled by an organizer") -> bool:
    """Cancel before or during sending: batches not yet sent are not sent."""
    return _settle(engine, occ, OccurrenceState.CANCELLED, note)


def channels_of(engine: Engine, ids: Iterable[str]) -> dict[str, dict[str, ChannelRow]]:
    """occurrence -> channel -> its row: what the clock's policy needs besides `known`."""
    return channel_state.rows(engine, ids)
