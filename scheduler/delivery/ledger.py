"""The delivery ledger: occurrences claimed once, deliveries moved through their states.

Every state change is one conditional UPDATE, so two workers, a redelivered task or a
restarted process can never both own a delivery:

    pending ──claim──► sending ──► sent | failed | skipped
       ▲                  │
       └── lease expired ─┘   (a worker died holding it: claimable again)
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from scheduler.calendar import Occurrence
from scheduler.delivery import channel_state
from scheduler.delivery.deferral import Deferral
from scheduler.delivery.reasons import reason_key
from scheduler.store import db
from scheduler.store.db import dialect_insert, writer
from scheduler.store.reconnect import survives_connection_loss
from scheduler.store.schema import (
    ChannelState,
    DeliveryState,
    MembershipStatus,
    OccurrenceState,
    deliveries,
    memberships,
    occurrence_channels,
    occurrences,
    subscribers,
    suppressions,
    utcnow,
)

D = deliveries.c
O = occurrences.c  # noqa: E741


class Claim(StrEnum):
    CLAIMED = "claimed"  # this call moved channels to `firing`: go on and fan them out
    RESUMED = "resumed"  # they were `firing` or `done` already: only unfinished work remains
    REFUSED = "refused"  # cancelled or missed: nothing may be sent


@dataclass(frozen=True, slots=True)
class OccurrenceRow:
    id: str
    campaign: str
    step: str
    instant: dt.datetime
    state: str
    late: bool
    note: str | None
    recipients: int | None
    fired_at: dt.datetime | None
    fanned_out_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    channel: str
    recipient: str
    subscriber_id: int | None
    language: str | None
    attempts: int
    # Its first temporary failure, if it had one: its retry window runs from there.
    first_failed_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one delivery, to be written to the ledger."""

    id: int
    state: DeliveryState  # sent, failed, skipped, or pending (retry later)
    response: str | None = None
    message_id: str | None = None
    error: str | None = None


def _occurrence_row(row: Any) -> OccurrenceRow:
    m = row._mapping
    return OccurrenceRow(**{f: m[f] for f in OccurrenceRow.__slots__})


def touch_occurrence(engine: Engine, occurrence_id: str) -> None:
    """Note activity on an occurrence (the clock resuming it), so that a long send is not
    judged stalled again at every sweep."""
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(occurrences).where(O.id == occurrence_id).values(updated_at=utcnow())
        )


@survives_connection_loss
def get_occurrence(engine: Engine, occurrence_id: str) -> OccurrenceRow | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(occurrences).where(O.id == occurrence_id)).first()
    return None if row is None else _occurrence_row(row)


def add_occurrence(
    conn: sa.Connection,
    occ: Occurrence,
    state: OccurrenceState,
    note: str | None,
    now: dt.datetime,
    **more: Any,
) -> bool:
    """Insert the occurrence's row in `state` (with the columns in `more`) unless it has one;
    True if this call did."""
    insert = dialect_insert(conn, occurrences)
    added = conn.execute(
        insert.values(
            id=occ.id,
            campaign=occ.campaign_id,
            step=occ.step_id,
            instant=occ.instant,
            state=state.value,
            note=note,
            created_at=now,
            updated_at=now,
            **more,
        )
        .on_conflict_do_nothing()
        .returning(O.id)
    ).first()
    return added is not None


@survives_connection_loss  # again after a lost commit: RESUMED, and the rows' own claims hold
def claim_occurrence(
    engine: Engine,
    occ: Occurrence,
    *,
    channels: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    late: bool = False,
    note: str | None = None,
    revive_missed: bool = False,
) -> tuple[Claim, OccurrenceRow]:
    """Move the occurrence and the given channels of its step (default: all) to `firing`,
    once. A second claim of the same channels is a no-op that says so (RESUMED); channels
    not given stay `planned` for the clock to fire at the instant.

    A `missed` occurrence or channel stays missed for the clock; an organizer sending it by
    hand (`revive_missed`) decides otherwise. A cancelled one is never sent.
    """
    now = now or utcnow()
    wanted = list(occ.channels if channels is None else channels)
    with writer(engine).begin() as conn:
        add_occurrence(conn, occ, OccurrenceState.FIRING, note, now, late=late, fired_at=now)
        channel_state.ensure_rows(conn, occ.id, occ.channels, now=now)
        # A row the clock created ahead of time (`planned`) is claimed by moving it on; so is
        # one whose other channels went out already, when a missed channel is sent by hand.
        movable = [OccurrenceState.PLANNED.value]
        if revive_missed:
            movable += [OccurrenceState.MISSED.value, OccurrenceState.DONE.value]
        revivable = [ChannelState.PLANNED.value]
        if revive_missed:
            revivable.append(ChannelState.MISSED.value)
        claimable = (
            sa.select(sa.literal(1))
            .where(
                occurrence_channels.c.occurrence_id == occ.id,
                occurrence_channels.c.channel.in_(wanted),
                occurrence_channels.c.state.in_(revivable),
            )
            .exists()
        )
        conn.execute(
            sa.update(occurrences)
            .where(O.id == occ.id, O.state.in_(movable), claimable)
            .values(
                state=OccurrenceState.FIRING.value,
                fired_at=now,
                updated_at=now,
                # A row recorded before it could fire (blocked, held) that now fires late
                # says so, like one claimed fresh.
                **({"late": True, "note": note} if late else {}),
            )
        )
        row = _occurrence_row(conn.execute(sa.select(occurrences).where(O.id == occ.id)).one())
        moved: list[str] = []
        if row.state == OccurrenceState.FIRING:
            moved = channel_state.claim(
                conn,
                occ.id,
                wanted,
                now=now,
                late=late,
                note=note,
                revive_missed=revive_missed,
            )
    if row.state in (OccurrenceState.CANCELLED, OccurrenceState.MISSED):
        return Claim.REFUSED, row
    return (Claim.CLAIMED if moved else Claim.RESUMED), row


def _wanted(
    lists: Sequence[str], after: int | None = None, upto: int | None = None
) -> sa.ColumnElement[bool]:
    """Who gets a campaign's email: active in one of its lists and not suppressed: the
    fan-out's test (`still_wanted` asks the same before each batch, one subscriber at a time).

    `after`/`upto`: the caller looks only at subscribers with `after < id <= upto`; saying so
    of the memberships too lets PostgreSQL read just that range of them. Without it each
    chunk of a fan-out hash-joined the whole list's memberships (6 ms per chunk at 50,000,
    the whole list again for each of 200 chunks at 1,000,000)."""
    m = memberships.c
    among = []
    if after is not None:
        among.append(m.subscriber_id > after)
    if upto is not None:
        among.append(m.subscriber_id <= upto)
    return sa.and_(_membership(lists, *among).exists(), ~_suppression().exists())


def _membership(lists: Sequence[str], *more: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """A row for the subscriber (correlated) if active in one of `lists`."""
    m = memberships.c
    return sa.select(sa.literal(1)).where(
        m.subscriber_id == subscribers.c.id,
        m.list_name.in_(list(lists)),
        m.status == MembershipStatus.ACTIVE.value,
        *more,
    )


def _suppression() -> sa.Select[Any]:
    """A row for the subscriber (correlated) if the address is suppressed."""
    return sa.select(sa.literal(1)).where(suppressions.c.email_key == subscribers.c.email_key)


@dataclass(frozen=True, slots=True)
class DuePlan:
    """When each recipient of a `deliver: local` step is due (scheduler/waves.py): the
    instant of each named zone, and the occurrence's own instant and zone for everyone
    else (no timezone, or a zone that appeared after the plan was made)."""

    by_zone: Mapping[str, dt.datetime]
    instant: dt.datetime
    zone: str


@survives_connection_loss
def fan_out_email(
    engine: Engine,
    occurrence_id: str,
    channel: str,
    lists: Sequence[str],
    *,
    due: DuePlan | None = None,
    limit: int | None = None,
) -> int:
    """Snapshot the audience into one pending delivery per subscriber, in one statement.

    Active in any of the lists, minus suppressions; someone on two lists appears once (the
    subscriber id is the recipient). Run again, it adds only people who were not there.
    With `due` (a local-time step), each row gets its `due_at` and `zone`, and ids ascend
    with `due_at`, so batches go out wave by wave, earliest first.
    `limit`: only the first so many subscribers (in that order), for a first batch to send
    while the rest is added. Returns the number of rows added.
    """
    count = (
        sa.select(sa.func.count())
        .select_from(deliveries)
        .where(D.occurrence_id == occurrence_id, D.channel == channel)
    )
    with writer(engine).begin() as conn:
        before = int(conn.scalar(count) or 0)
        conn.execute(_fan_out_insert(conn, occurrence_id, channel, lists, due=due, limit=limit))
        # Counted, not rowcount: drivers disagree on rowcount for INSERT ... ON CONFLICT.
        return int(conn.scalar(count) or 0) - before


class FannedChunk(NamedTuple):
    added: int
    last_subscriber: int | None  # the largest subscriber id added (None: none added)
    last_id: int | None  # the largest delivery id added


@survives_connection_loss
def fan_out_email_chunk(
    engine: Engine,
    occurrence_id: str,
    channel: str,
    lists: Sequence[str],
    *,
    after: int,
    upto: int | None = None,
    limit: int | None = None,
) -> FannedChunk:
    """`fan_out_email` for the subscribers with `after < id <= upto` (`upto` None: no upper
    bound), at most `limit` of them, in id order, in a transaction of its own: a large
    audience is added chunk by chunk, and each chunk's batches can go out while the next is
    added. Who is there already is skipped, as in `fan_out_email`.

    Chunks are ranges of subscriber ids, not "the next N": each is then an index range of
    the subscribers' key whatever the plan, where "the next N after" left PostgreSQL free
    to pick (for a prepared statement, once) a plan that read the whole audience."""
    with writer(engine).begin() as conn:
        insert = _fan_out_insert(
            conn, occurrence_id, channel, lists, after=after, upto=upto, limit=limit
        )
        returned = insert.returning(D.id, D.subscriber_id)
        if conn.dialect.name == "postgresql":
            # Summed up by the server: fetching 5,000 returned rows per chunk was a tenth
            # of `scheduler send --enqueue`'s time (SQLite cannot put an INSERT in a CTE).
            rows = returned.cte("added")
            n, last_subscriber, last_id = conn.execute(
                sa.select(
                    sa.func.count(), sa.func.max(rows.c.subscriber_id), sa.func.max(rows.c.id)
                )
            ).one()
        else:
            added = conn.execute(returned).all()
            n = len(added)
            last_subscriber = max((r.subscriber_id for r in added), default=None)
            last_id = max((r.id for r in added), default=None)
    if not n:
        return FannedChunk(0, None, None)
    return FannedChunk(int(n), int(last_subscriber), int(last_id))


@survives_connection_loss
def last_subscriber_id(engine: Engine) -> int:
    """The largest subscriber id (0 when there is none): where a chunked fan-out's ranges end
    (its last chunk has no upper bound, for whoever signs up meanwhile)."""
    with engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.max(subscribers.c.id))) or 0)


def _fan_out_insert(
    conn: sa.Connection,
    occurrence_id: str,
    channel: str,
    lists: Sequence[str],
    *,
    due: DuePlan | None = None,
    after: int | None = None,
    upto: int | None = None,
    limit: int | None = None,
) -> Any:
    s = subscribers.c
    wanted = _wanted(lists, after, upto)
    columns = ["occurrence_id", "channel", "recipient", "subscriber_id", "language", "state"]
    values: list[Any] = [
        sa.literal(occurrence_id),
        sa.literal(channel),
        sa.cast(s.id, sa.String),
        s.id,
        s.language,
        sa.literal(DeliveryState.PENDING.value),
    ]
    order: list[Any] = [s.id]
    if due is not None:
        known = list(due.by_zone)
        due_at: Any = sa.literal(due.instant, D.due_at.type)
        zone: Any = sa.literal(due.zone)
        if known:
            due_at = sa.case(
                *((s.timezone == z, sa.literal(due.by_zone[z], D.due_at.type)) for z in known),
                else_=due_at,
            )
            zone = sa.case((s.timezone.in_(known), s.timezone), else_=zone)
        columns += ["due_at", "zone"]
        values += [due_at, zone]
        order = [due_at, s.id]
    there = sa.select(sa.literal(1)).where(
        D.occurrence_id == occurrence_id,
        D.channel == channel,
        D.recipient == sa.cast(s.id, sa.String),
    )
    audience = (
        sa.select(*values)
        .where(wanted)
        # Not those there already (a first batch, or before a crash): PostgreSQL would draw
        # an id for each conflicting row, leaving gaps that make batches of the id range.
        .where(~there.exists())
        .order_by(*order)
        .limit(limit)
    )
    if after is not None:
        audience = audience.where(s.id > after)
    if upto is not None:
        audience = audience.where(s.id <= upto)
    return (
        dialect_insert(conn, deliveries)
        .from_select(columns, audience)
        .on_conflict_do_nothing(index_elements=["occurrence_id", "channel", "recipient"])
    )


@survives_connection_loss
def audience_zones(engine: Engine, lists: Sequence[str]) -> dict[str | None, int]:
    """How many subscribers a fan-out to `lists` would reach now, by time zone (None: no
    timezone): the waves of a local-time step before it fires."""
    s = subscribers.c
    query = sa.select(s.timezone, sa.func.count()).where(_wanted(lists)).group_by(s.timezone)
    with engine.connect() as conn:
        return {zone: int(n) for zone, n in conn.execute(query)}


@survives_connection_loss
def add_post_delivery(
    engine: Engine, occurrence_id: str, channel: str, *, due_at: dt.datetime | None = None
) -> None:
    """A social channel gets one delivery: the post (or thread) on that channel. `due_at`:
    a local-time step's post waits for the occurrence's own instant."""
    with writer(engine).begin() as conn:
        insert = (
            dialect_insert(conn, deliveries)
            .values(
                occurrence_id=occurrence_id,
                channel=channel,
                recipient=channel,
                state=DeliveryState.PENDING.value,
                due_at=due_at,
            )
            .on_conflict_do_nothing(index_elements=["occurrence_id", "channel", "recipient"])
        )
        conn.execute(insert)


@survives_connection_loss
def skip_overdue(engine: Engine, occurrence_id: str, *, due_before: dt.datetime, note: str) -> int:
    """Waves that came due longer ago than the catch-up window are not sent: their pending
    deliveries are recorded `skipped` with `note` (why). Returns how many."""
    with writer(engine).begin() as conn:
        skipped = conn.execute(
            sa.update(deliveries)
            .where(
                D.occurrence_id == occurrence_id,
                D.state == DeliveryState.PENDING.value,
                D.due_at.is_not(None),
                D.due_at < due_before,
            )
            .values(state=DeliveryState.SKIPPED.value, last_error=note, updated_at=utcnow())
            .returning(D.id)
        )
        return len(skipped.all())


def open_waves(
    engine: Engine, occurrence_ids: Sequence[str], now: dt.datetime
) -> dict[str, dt.datetime]:
    """occurrence -> the earliest `due_at` (not after `now`) of a delivery nobody sends:
    pending, or sending with an expired lease. A wave the clock has to (re)start."""
    if not occurrence_ids:
        return {}
    query = (
        sa.select(D.occurrence_id, sa.func.min(D.due_at))
        .where(
            D.occurrence_id.in_(list(occurrence_ids)),
            D.due_at.is_not(None),
            D.due_at <= now,
            sa.or_(
                D.state == DeliveryState.PENDING.value,
                sa.and_(D.state == DeliveryState.SENDING.value, D.lease_until < now),
            ),
        )
        .group_by(D.occurrence_id)
    )
    with engine.connect() as conn:
        return {occ: due for occ, due in ((o, _aware(d)) for o, d in conn.execute(query)) if due}


@dataclass(frozen=True, slots=True)
class WaveCount:
    due_at: dt.datetime
    zones: tuple[str, ...]
    states: dict[str, int]  # delivery state -> count

    @property
    def size(self) -> int:
        return sum(self.states.values())

    def as_json(self) -> dict[str, object]:
        from zoneinfo import ZoneInfo

        local = self.due_at.astimezone(ZoneInfo(self.zones[0])) if self.zones else self.due_at
        get = self.states.get
        return {
            "instant": self.due_at.isoformat().replace("+00:00", "Z"),
            "local": local.isoformat(),
            "zones": list(self.zones),
            "size": self.size,
            "sent": get("sent", 0),
            "pending": get("pending", 0) + get("sending", 0),
            "failed": get("failed", 0),
            "skipped": get("skipped", 0),
        }

    def text(self) -> str:
        j = self.as_json()
        done = f"sent {j['sent']:,}, pending {j['pending']:,}"
        if j["failed"] or j["skipped"]:
            done += f", failed {j['failed']:,}, skipped {j['skipped']:,}"
        return f"wave {self.due_at:%Y-%m-%d %H:%M} UTC ({', '.join(self.zones)}): {done}"


def wave_counts(
    engine: Engine, occurrence_ids: Sequence[str] | None = None
) -> dict[str, list[WaveCount]]:
    """occurrence -> its waves as the ledger has them (email rows with a `due_at`), earliest
    first, with each wave's deliveries by state: what `status` and the dashboard show."""
    query = (
        sa.select(D.occurrence_id, D.due_at, D.zone, D.state, sa.func.count())
        .where(D.due_at.is_not(None), D.subscriber_id.is_not(None))
        .group_by(D.occurrence_id, D.due_at, D.zone, D.state)
    )
    if occurrence_ids is not None:
        query = query.where(D.occurrence_id.in_(list(occurrence_ids)))
    found: dict[str, dict[dt.datetime, tuple[set[str], dict[str, int]]]] = {}
    with engine.connect() as conn:
        for occ, due, zone, state, n in conn.execute(query):
            due = _aware(due)
            if due is None:
                continue
            zones, states = found.setdefault(occ, {}).setdefault(due, (set(), {}))
            if zone:
                zones.add(zone)
            states[state] = states.get(state, 0) + int(n)
    return {
        occ: [
            WaveCount(due, tuple(sorted(zones)), states)
            for due, (zones, states) in sorted(by_due.items())
        ]
        for occ, by_due in found.items()
    }


_SEND_TABLES = ("subscribers", "memberships", "suppressions", "deliveries")


@survives_connection_loss
def refresh_statistics(engine: Engine, tables: Sequence[str] | None = None) -> None:
    """After a large fan-out, let PostgreSQL's planner see the new rows: with stale statistics
    it plans the per-batch queries as if the tables were empty (seconds per batch, not ms).
    `tables`: those a send reads, unless named."""
    db.refresh_statistics(engine, tables or _SEND_TABLES)


@survives_connection_loss
def mark_fanned_out(engine: Engine, occurrence_id: str) -> int:
    """Count the occurrence's delivery rows, and record that every one exists once no channel
    still to send lacks its fan-out; returns how many there are."""
    c = occurrence_channels.c
    unfanned = (
        sa.select(sa.literal(1))
        .where(
            c.occurrence_id == occurrence_id,
            c.state.not_in(channel_state.FINAL),
            c.fanned_out_at.is_(None),
        )
        .exists()
    )
    with writer(engine).begin() as conn:
        total = (
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(D.occurrence_id == occurrence_id)
            )
            or 0
        )
        conn.execute(
            sa.update(occurrences)
            .where(O.id == occurrence_id)
            .values(
                fanned_out_at=sa.case(
                    (unfanned, O.fanned_out_at), else_=sa.func.coalesce(O.fanned_out_at, utcnow())
                ),
                recipients=total,
                updated_at=utcnow(),
            )
        )
        return int(total)


@survives_connection_loss
def fail_pending(engine: Engine, occurrence_id: str, channel: str, reason: str) -> int:
    """Record every pending delivery of a channel as failed with `reason`, without trying:
    the channel cannot send at all (its secret is unset). Ordinary failed deliveries, so a
    retry sends them once the reason is fixed. Returns how many. A later wave of a
    local-time step is left pending: the variable may be set by its instant."""
    now = utcnow()
    with writer(engine).begin() as conn:
        failed = conn.execute(
            sa.update(deliveries)
            .where(
                D.occurrence_id == occurrence_id,
                D.channel == channel,
                D.state == DeliveryState.PENDING.value,
                sa.or_(D.due_at.is_(None), D.due_at <= now),
            )
            .values(state=DeliveryState.FAILED.value, last_error=reason, updated_at=now)
            .returning(D.id)
        )
        return len(failed.all())


@survives_connection_loss
def id_range(engine: Engine, occurrence_id: str, channel: str) -> tuple[int, int] | None:
    """Smallest and largest delivery id of one channel: batches are slices of this range,
    so planning a million recipients needs no list of a million ids."""
    with engine.connect() as conn:
        lo, hi = conn.execute(
            sa.select(sa.func.min(D.id), sa.func.max(D.id)).where(
                D.occurrence_id == occurrence_id, D.channel == channel
            )
        ).one()
    return None if lo is None else (int(lo), int(hi))


def batch_ranges(bounds: tuple[int, int] | None, size: int) -> list[tuple[int, int]]:
    """Half-open [lo, hi) id ranges of at most `size` deliveries each."""
    if bounds is None:
        return []
    lo, hi = bounds
    return [(start, min(start + size, hi + 1)) for start in range(lo, hi + 1, size)]


def _still_sending() -> sa.ColumnElement[bool]:
    """The "only if still `sending`" of a write that names its rows by id, in a form no index
    can serve. As a plain `state = 'sending'`, PostgreSQL drove the outcome write from the
    state index: the statistics of a fresh fan-out (every row pending) put `sending` at one
    row, so for each row in flight it read every outcome of the flush (250 x 125 comparisons:
    40 ms a flush with two batches in flight at 50,000 rows, against 2.5 ms by the primary
    key, measured). Without that path every plan left costs the flush's rows or the table's,
    both known, never their product."""
    return (D.state == DeliveryState.SENDING.value).is_(sa.true())


def _claim_statement() -> sa.Update:
    """`claim_batch`'s statement, with parameters (p_occurrence, p_channel, p_lo, p_hi, p_now,
    p_lease_until)."""
    now = sa.bindparam("p_now", type_=D.updated_at.type)
    occurrence = sa.bindparam("p_occurrence", type_=D.occurrence_id.type)
    cancelled = sa.select(sa.literal(1)).where(
        O.id == occurrence, O.state == OccurrenceState.CANCELLED.value
    )
    claimable = sa.or_(
        sa.and_(
            D.state == DeliveryState.PENDING.value,
            sa.or_(D.next_attempt_at.is_(None), D.next_attempt_at <= now),
        ),
        sa.and_(D.state == DeliveryState.SENDING.value, D.lease_until < now),
    )
    # A later wave of a local-time step is not due yet: it stays pending for its instant.
    due = sa.or_(D.due_at.is_(None), D.due_at <= now)
    return (
        sa.update(deliveries)
        .where(
            D.occurrence_id == occurrence,
            D.channel == sa.bindparam("p_channel", type_=D.channel.type),
            D.id >= sa.bindparam("p_lo", type_=D.id.type),
            D.id < sa.bindparam("p_hi", type_=D.id.type),
            claimable,
            due,
            ~cancelled.exists(),
        )
        .values(
            state=DeliveryState.SENDING.value,
            attempts=D.attempts + 1,
            lease_until=sa.bindparam("p_lease_until", type_=D.lease_until.type),
            next_attempt_at=None,
            updated_at=now,
        )
        .returning(
            D.id,
            D.channel,
            D.recipient,
            D.subscriber_id,
            D.language,
            D.attempts,
            D.first_failed_at,
        )
    )


# Built once: building this statement and its cache key for every batch cost the sender
# 0.6 ms of CPU a batch, more than PostgreSQL took to run it (measured).
_CLAIM = _claim_statement()


@survives_connection_loss
def claim_batch(
    engine: Engine,
    occurrence_id: str,
    channel: str,
    lo: int,
    hi: int,
    *,
    lease: dt.timedelta,
    now: dt.datetime | None = None,
) -> list[ClaimedDelivery]:
    """Take the deliveries of [lo, hi) that nobody owns: pending (a deferred one once its
    next attempt is due), or sending with an expired lease (a worker died). Already sent,
    failed or skipped ones are never returned, and nothing of a cancelled occurrence (asked
    in the same statement: one query per batch fewer, and no cancel slips in between)."""
    now = now or utcnow()
    params = {
        "p_occurrence": occurrence_id,
        "p_channel": channel,
        "p_lo": lo,
        "p_hi": hi,
        "p_now": now,
        "p_lease_until": now + lease,
    }
    with writer(engine).begin() as conn:
        rows = conn.execute(_CLAIM, params).all()
    return sorted((ClaimedDelivery(*row) for row in rows), key=lambda d: d.id)


@survives_connection_loss
def defer(engine: Engine, deferrals: Sequence[Deferral]) -> int:
    """Hand deliveries this sender holds back to `pending` until their next attempt (see
    delivery/deferral.py), keeping when they first failed; returns how many."""
    if not deferrals:
        return 0
    now = utcnow()
    statement = (
        sa.update(deliveries)
        .where(D.id == sa.bindparam("b_id"), _still_sending())
        .values(
            state=DeliveryState.PENDING.value,
            next_attempt_at=sa.bindparam("b_retry_at", type_=D.next_attempt_at.type),
            first_failed_at=sa.func.coalesce(
                D.first_failed_at, sa.bindparam("b_first", type_=D.first_failed_at.type)
            ),
            provider_response=sa.bindparam("b_response"),
            last_error=sa.bindparam("b_error"),
            lease_until=None,
            updated_at=now,
        )
    )
    params = [
        {
            "b_id": d.id,
            "b_retry_at": d.retry_at,
            "b_first": d.first_failed_at,
            "b_response": d.response,
            "b_error": f"deferred after a temporary failure: {d.response}",
        }
        for d in deferrals
    ]
    with writer(engine).begin() as conn:
        conn.execute(statement, params)
    return len(params)


@dataclass(frozen=True, slots=True)
class DeferredSummary:
    """Deliveries of one channel waiting for their next attempt."""

    count: int
    next_attempt_at: dt.datetime | None
    reason: str | None  # the most common one


@survives_connection_loss
def deferred(
    engine: Engine, occurrence_ids: Sequence[str] | None = None
) -> dict[str, dict[str, DeferredSummary]]:
    """occurrence -> channel -> the deferred deliveries (count, soonest next attempt)."""
    where = [D.state == DeliveryState.PENDING.value, D.next_attempt_at.is_not(None)]
    if occurrence_ids is not None:
        where.append(D.occurrence_id.in_(list(occurrence_ids)))
    query = (
        sa.select(
            D.occurrence_id,
            D.channel,
            D.provider_response,
            sa.func.count(),
            sa.func.min(D.next_attempt_at),
        )
        .where(*where)
        .group_by(D.occurrence_id, D.channel, D.provider_response)
    )
    grouped: dict[str, dict[str, list[tuple[int, dt.datetime | None, str | None]]]] = {}
    with engine.connect() as conn:
        for occ, channel, response, n, soonest in conn.execute(query):
            grouped.setdefault(occ, {}).setdefault(channel, []).append(
                (int(n), _aware(soonest), response)
            )
    out: dict[str, dict[str, DeferredSummary]] = {}
    for occ, by_channel in grouped.items():
        for channel, parts in by_channel.items():
            times = [t for _, t, _ in parts if t is not None]
            common = max(parts, key=lambda p: p[0])[2]
            out.setdefault(occ, {})[channel] = DeferredSummary(
                count=sum(n for n, _, _ in parts),
                next_attempt_at=min(times) if times else None,
                reason=reason_key(common) if common else None,
            )
    return out


def deferred_due(engine: Engine, now: dt.datetime | None = None) -> set[str]:
    """Occurrences with a deferred delivery whose next attempt has come: the clock sends
    them again, whatever their catch-up window."""
    now = now or utcnow()
    query = (
        sa.select(D.occurrence_id)
        .where(D.state == DeliveryState.PENDING.value, D.next_attempt_at <= now)
        .distinct()
    )
    with engine.connect() as conn:
        return {str(o) for o in conn.execute(query).scalars()}


@survives_connection_loss
def renew_lease(engine: Engine, ids: Sequence[int], *, lease: dt.timedelta) -> None:
    if not ids:
        return
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(deliveries)
            .where(D.id.in_(list(ids)), _still_sending())
            .values(lease_until=utcnow() + lease)
        )


# Run again after a lost commit reply, a try may count twice: the count is shown to people
# and tells a post to look for an earlier copy first, so erring high is the safe side.
@survives_connection_loss
def count_attempt(engine: Engine, ids: Sequence[int]) -> None:
    """Another try of deliveries this worker already holds (a retry after a 4xx)."""
    if not ids:
        return
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(deliveries)
            .where(D.id.in_(list(ids)), _still_sending())
            .values(attempts=D.attempts + 1, updated_at=utcnow())
        )


def record(engine: Engine, results: Iterable[Result]) -> int:
    """Write outcomes in one transaction. Only deliveries still `sending` change, so a late
    writer cannot turn a `sent` back into anything else.

    One statement per flush, written for the driver: SQLAlchemy's statement building and
    per-row parameter handling cost more CPU than the database's work (PostgreSQL: 180 us
    per outcome through `UPDATE ... FROM (VALUES ...)`). PostgreSQL: the rows as one JSON
    array of arrays, one round trip and the same statement text for any number of rows
    (five text arrays cost the driver twice the CPU: it checks every element for quoting).
    SQLite, in the same process: one executemany of the row-by-row form."""
    rows = [(r.id, r.state.value, r.response, r.message_id, r.error) for r in results]
    if not rows:
        return 0
    return _record_rows(engine, rows)


@survives_connection_loss  # the messages are out: their outcomes must land (see reconnect.py)
def _record_rows(engine: Engine, rows: list[tuple[Any, ...]]) -> int:
    """`record`'s write, of rows made once (a retry must not read `results` again)."""
    now = utcnow()
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(_RECORD_POSTGRESQL, (now, now, json.dumps(rows)))
        elif conn.dialect.name == "sqlite":
            stamp = _sqlite_time(conn.dialect, now)
            sent = DeliveryState.SENT.value
            conn.exec_driver_sql(
                _RECORD_SQLITE,
                [
                    (state, response, message_id, error, stamp if state == sent else None, stamp, i)
                    for i, state, response, message_id, error in rows
                ],
            )
        else:
            conn.execute(_record_each(now), [_record_params(row, now) for row in rows])
    return len(rows)


# `_record_each` for every row at once; parameters: sent_at, updated_at, then the rows as JSON
# ([[id, state, response, message_id, error], ...]). As `jsonb`, parsed once: each `->>` of a
# `json` value lexes its element again, five times a row (7 % of the statement, measured).
# `IS TRUE`: see `_still_sending`.
_RECORD_POSTGRESQL = (
    "UPDATE deliveries AS d SET state = v.state,"
    " provider_response = coalesce(v.response, d.provider_response),"
    " message_id = coalesce(v.message_id, d.message_id), last_error = v.error,"
    " sent_at = CASE WHEN v.state = 'sent' THEN %s::timestamptz END, lease_until = NULL,"
    " updated_at = %s::timestamptz"
    " FROM (SELECT (r->>0)::bigint AS id, r->>1 AS state, r->>2 AS response,"
    " r->>3 AS message_id, r->>4 AS error FROM jsonb_array_elements(%s::jsonb) AS r) AS v"
    " WHERE d.id = v.id AND (d.state = 'sending') IS TRUE"
)
# The row-by-row `_record_each`, written out for SQLite's driver (qmark parameters).
_RECORD_SQLITE = (
    "UPDATE deliveries SET state = ?, provider_response = coalesce(?, provider_response),"
    " message_id = coalesce(?, message_id), last_error = ?, sent_at = ?, lease_until = NULL,"
    " updated_at = ? WHERE id = ? AND state = 'sending'"
)


def _sqlite_time(dialect: sa.Dialect, value: dt.datetime) -> Any:
    """`value` as the column type stores it on this dialect (what SQLAlchemy would bind)."""
    process = D.updated_at.type.bind_processor(dialect)
    return process(value) if process is not None else value


def _record_params(row: tuple[Any, ...], now: dt.datetime) -> dict[str, Any]:
    id_, state, response, message_id, error = row
    return {
        "b_id": id_,
        "b_state": state,
        "b_response": response,
        "b_message_id": message_id,
        "b_error": error,
        "b_sent_at": now if state == DeliveryState.SENT.value else None,
    }


def _record_each(now: dt.datetime) -> sa.Update:
    """The portable form, for a database other than PostgreSQL and SQLite."""
    return (
        sa.update(deliveries)
        .where(D.id == sa.bindparam("b_id"), _still_sending())
        .values(
            state=sa.bindparam("b_state"),
            provider_response=sa.func.coalesce(sa.bindparam("b_response"), D.provider_response),
            message_id=sa.func.coalesce(sa.bindparam("b_message_id"), D.message_id),
            last_error=sa.bindparam("b_error"),
            sent_at=sa.bindparam("b_sent_at", type_=deliveries.c.sent_at.type),
            lease_until=None,
            updated_at=now,
        )
    )


@survives_connection_loss
def still_wanted(
    engine: Engine, subscriber_ids: Sequence[int], lists: Sequence[str]
) -> dict[int, tuple[str, str | None]]:
    """Subscribers who, right now, are active in one of the lists and not suppressed:
    id -> (email, name). Checked just before sending, so an unsubscribe made after the
    fan-out still takes effect for every batch not yet sent."""
    if not subscriber_ids:
        return {}
    # The fan-out's test (`_wanted`), written as one probe per subscriber: as EXISTS,
    # PostgreSQL planned it as a hash join over the whole list's memberships, 13 ms per batch
    # of 250 at 50,000 subscribers and growing with the list; a correlated subquery with
    # LIMIT cannot be turned into a join, so each id costs two index look-ups (0.8 ms for
    # 250).
    query = _still_wanted_query(tuple(lists), engine.dialect.name == "postgresql")
    with engine.connect() as conn:
        return {int(i): (e, n) for i, e, n in conn.execute(query, {"ids": list(subscriber_ids)})}


@functools.lru_cache(maxsize=64)
def _still_wanted_query(lists: tuple[str, ...], postgres: bool) -> sa.Select[Any]:
    """`still_wanted`'s query for `lists`, built once (see `_CLAIM`), with the ids as the
    parameter `ids`."""
    s = subscribers.c
    member = _membership(lists).limit(1).scalar_subquery()
    suppressed = _suppression().limit(1).scalar_subquery()
    # On PostgreSQL one array parameter: 250 expanded IN parameters cost the client more
    # (statement conversion) than the server's look-ups.
    among = (
        s.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger)))
        if postgres
        else s.id.in_(sa.bindparam("ids", expanding=True))
    )
    return sa.select(s.id, s.email, s.name).where(among, member.is_not(None), suppressed.is_(None))


@survives_connection_loss
def remaining(engine: Engine, occurrence_id: str) -> int:
    """Deliveries not yet in a final state."""
    with engine.connect() as conn:
        return int(
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(
                    D.occurrence_id == occurrence_id,
                    D.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]),
                )
            )
            or 0
        )


@survives_connection_loss
def held(engine: Engine, occurrence_id: str) -> tuple[int, dt.datetime | None]:
    """Deliveries another sender holds (or a crashed one left), and when the last lease ends."""
    with engine.connect() as conn:
        n, until = conn.execute(
            sa.select(sa.func.count(), sa.func.max(D.lease_until)).where(
                D.occurrence_id == occurrence_id, D.state == DeliveryState.SENDING.value
            )
        ).one()
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    return int(n or 0), until


@survives_connection_loss
def held_in_range(
    engine: Engine, occurrence_id: str, channel: str, lo: int, hi: int
) -> dt.datetime | None:
    """When the last lease on a still-`sending` delivery of [lo, hi) ends, if any."""
    with engine.connect() as conn:
        until = conn.scalar(
            sa.select(sa.func.max(D.lease_until)).where(
                D.occurrence_id == occurrence_id,
                D.channel == channel,
                D.id >= lo,
                D.id < hi,
                D.state == DeliveryState.SENDING.value,
            )
        )
    return _aware(until)


def _aware(value: object) -> dt.datetime | None:
    """max() over a UtcDateTime column comes back naive on SQLite (the type is not applied)."""
    if not isinstance(value, dt.datetime):
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@survives_connection_loss
def finish_if_complete(engine: Engine, occurrence_id: str) -> bool:
    """Mark each channel `done` once its fan-out is complete and nothing of it is left to
    send, and the occurrence once every channel of its step is (see `channel_state`).

    Called after every batch, so it stays cheap with a million deliveries: an EXISTS per
    firing channel that stops at the first open row, not a count.
    """
    return channel_state.finish(engine, occurrence_id)


@survives_connection_loss
def is_cancelled(engine: Engine, occurrence_id: str) -> bool:
    with engine.connect() as conn:
        state = conn.scalar(sa.select(O.state).where(O.id == occurrence_id))
    return state == OccurrenceState.CANCELLED.value


@survives_connection_loss
def counts(
    engine: Engine, occurrence_id: str | None = None
) -> dict[str, dict[str, dict[str, int]]]:
    """occurrence -> channel -> state -> count."""
    query = sa.select(D.occurrence_id, D.channel, D.state, sa.func.count()).group_by(
        D.occurrence_id, D.channel, D.state
    )
    if occurrence_id is not None:
        query = query.where(D.occurrence_id == occurrence_id)
    out: dict[str, dict[str, dict[str, int]]] = {}
    with engine.connect() as conn:
        for occ, channel, state, n in conn.execute(query):
            out.setdefault(occ, {}).setdefault(channel, {})[state] = int(n)
    return out


def list_occurrences(
    engine: Engine, *, limit: int = 50, chapter: str | None = None
) -> list[OccurrenceRow]:
    """The newest occurrences; only one chapter's (`usa/…` campaigns) when given."""
    query = sa.select(occurrences).order_by(O.instant.desc(), O.id).limit(limit)
    if chapter is not None:
        query = query.where(O.campaign.startswith(f"{chapter}/", autoescape=True))
    with engine.connect() as conn:
        return [_occurrence_row(r) for r in conn.execute(query)]


# Distinct error texts read to group failures: more than any real occurrence has once the
# addresses are taken out, and a bound on the work if every reply is different.
_DISTINCT_ERRORS = 10_000


def failures(engine: Engine, occurrence_id: str, *, limit: int = 20) -> list[tuple[str, str, int]]:
    """The most common failure reasons of an occurrence: (channel, reason, count), with the
    addresses servers echo taken out, so one refusal of fifty people is one line."""
    query = (
        sa.select(D.channel, D.last_error, sa.func.count())
        .where(D.occurrence_id == occurrence_id, D.state == DeliveryState.FAILED.value)
        .group_by(D.channel, D.last_error)
        .order_by(sa.func.count().desc())
        .limit(_DISTINCT_ERRORS)
    )
    grouped: dict[tuple[str, str], int] = {}
    with engine.connect() as conn:
        for channel, error, n in conn.execute(query):
            key = (channel, reason_key(error or "failed"))
            grouped[key] = grouped.get(key, 0) + int(n)
    ranked = sorted(grouped.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(c, reason, n) for (c, reason), n in ranked[:limit]]


@survives_connection_loss
def mark_bounced(engine: Engine, subscriber_ids: Sequence[int]) -> None:
    """A hard bounce (5.1.x): the address is suppressed and its memberships say `bounced`."""
    if not subscriber_ids:
        return
    now = utcnow()
    ids = list(subscriber_ids)
    with writer(engine).begin() as conn:
        keys = (
            conn.execute(sa.select(subscribers.c.email_key).where(subscribers.c.id.in_(ids)))
            .scalars()
            .all()
        )
        insert = dialect_insert(conn, suppressions)
        for key in keys:
            conn.execute(
                insert.values(
                    email_key=key, reason="bounced", created_at=now
                ).on_conflict_do_nothing()
            )
        conn.execute(
            sa.update(memberships)
            .where(memberships.c.subscriber_id.in_(ids))
            .values(status=MembershipStatus.BOUNCED.value, updated_at=now)
        )


def requeue_failed(
    engine: Engine, occurrence_id: str, channels: Sequence[str] | None = None
) -> dict[str, int]:
    """Put an occurrence's failed deliveries back to `pending` for `scheduler retry`:
    channel -> how many. Never a sent or skipped one, never a bounce (the address is
    suppressed); the reason it failed with is kept in `retried_error`. The occurrence goes
    back to `firing` so a crash during the retry is resumed like any half-sent occurrence.
    """
    now = utcnow()
    where = [
        D.occurrence_id == occurrence_id,
        D.state == DeliveryState.FAILED.value,
        sa.or_(D.last_error.is_(None), ~D.last_error.startswith("bounced:")),
    ]
    if channels:
        where.append(D.channel.in_(list(channels)))
    statement = (
        sa.update(deliveries)
        .where(*where)
        .values(
            state=DeliveryState.PENDING.value,
            retries=D.retries + 1,
            retried_at=now,
            retried_error=D.last_error,
            # One attempt is kept on the books: a post's channel then looks up whether an
            # earlier attempt got through before posting again.
            attempts=1,
            lease_until=None,
            # Sent again by hand: a whole retry window from its next temporary failure.
            first_failed_at=None,
            next_attempt_at=None,
            updated_at=now,
        )
        .returning(D.channel)
    )
    out: dict[str, int] = {}
    with writer(engine).begin() as conn:
        for (channel,) in conn.execute(statement):
            out[channel] = out.get(channel, 0) + 1
        if out:
            conn.execute(
                sa.update(occurrences)
                .where(O.id == occurrence_id, O.state == OccurrenceState.DONE.value)
                .values(state=OccurrenceState.FIRING.value, finished_at=None, updated_at=now)
            )
            oc = occurrence_channels.c
            conn.execute(
                sa.update(occurrence_channels)
                .where(
                    oc.occurrence_id == occurrence_id,
                    oc.channel.in_(list(out)),
                    oc.state == ChannelState.DONE.value,
                )
                .values(state=ChannelState.FIRING.value, finished_at=None, updated_at=now)
            )
    return out


def not_retryable(
    engine: Engine, occurrence_id: str, channels: Sequence[str] | None = None
) -> dict[str, int]:
    """What `scheduler retry` leaves alone: bounced (failed with a 5.1.x) and skipped."""
    bounced = sa.and_(D.state == DeliveryState.FAILED.value, D.last_error.startswith("bounced:"))
    kind = sa.case((bounced, "bounced"), else_=D.state)
    query = (
        sa.select(kind, sa.func.count())
        .where(
            D.occurrence_id == occurrence_id,
            sa.or_(bounced, D.state == DeliveryState.SKIPPED.value),
        )
        .group_by(kind)
    )
    if channels:
        query = query.where(D.channel.in_(list(channels)))
    with engine.connect() as conn:
        return {str(k): int(n) for k, n in conn.execute(query)}
