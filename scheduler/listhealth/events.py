"""Apply one bounce, complaint or unsubscribe report to the store, once.

Every source (the mailbox, a provider webhook, a web page) describes what it read as a
`Report`; `apply` records it in `health_events` and acts on it in the same transaction. The
record is unique per (source, event_key), so the second sight of a report (a mailbox read
again, a webhook redelivered) is a no-op that says so.

What each kind does:
- hard bounce: the address is suppressed (`bounced`) and its memberships become `bounced`;
- soft bounce: counted once per message (occurrence); soft bounces of `soft_bounce_limit`
  different messages within `soft_bounce_days` act as a hard bounce;
- complaint: suppressed as `complained` and every membership `complained`;
- unsubscribe: the memberships of the lists concerned become `unsubscribed`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience.address import address_key
from scheduler.config.model import Config
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import (
    HealthKind,
    MembershipStatus,
    SuppressionReason,
    deliveries,
    health_events,
    lists,
    memberships,
    occurrences,
    subscribers,
    suppressions,
    utcnow,
)

# Memberships a bounce or complaint may still change (a person's own unsubscribe stays).
_OPEN = (MembershipStatus.ACTIVE.value, MembershipStatus.UNCONFIRMED.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One report as its source read it. Who it is about is given by the most trustworthy
    thing the source has: a signed delivery token, a signed subscriber link, the Message-ID a
    signed webhook names, or (signed webhooks only) the address."""

    source: str  # mailbox, ses, postmark, mailgun, sendgrid, web
    event_key: str  # unique within the source
    kind: HealthKind
    delivery_id: int | None = None
    subscriber_id: int | None = None
    message_id: str | None = None  # <...@...> as the original message had it
    email: str | None = None
    occurrence_id: str | None = None  # when the source names it (a signed link)
    lists: tuple[str, ...] = ()  # unsubscribe: from which lists (default: the campaign's)
    detail: str | None = None  # a DSN status, a feedback type; never an address


@dataclass(frozen=True, slots=True)
class Policy:
    soft_bounce_limit: int = 3
    soft_bounce_window: dt.timedelta = dt.timedelta(days=30)

    @classmethod
    def of(cls, config: Config) -> Policy:
        return cls(
            soft_bounce_limit=config.settings.soft_bounce_limit,
            soft_bounce_window=dt.timedelta(days=config.settings.soft_bounce_days),
        )


@dataclass(frozen=True, slots=True)
class Applied:
    new: bool  # False: seen before, nothing changed
    kind: HealthKind
    subscriber_id: int | None
    suppressed: bool = False  # this report suppressed the address
    lists: tuple[str, ...] = ()


def already_seen(engine: Engine, source: str, event_key: str) -> bool:
    query = sa.select(health_events.c.id).where(
        (health_events.c.source == source) & (health_events.c.event_key == event_key)
    )
    with engine.connect() as conn:
        return conn.scalar(query) is not None


def apply(
    engine: Engine,
    config: Config,
    report: Report,
    *,
    policy: Policy | None = None,
    now: dt.datetime | None = None,
) -> Applied:
    policy = policy or Policy.of(config)
    now = now or utcnow()
    with writer(engine).begin() as conn:
        sid, occurrence_id = _who(conn, report)
        concerned = report.lists or _campaign_lists(conn, config, occurrence_id)
        insert = dialect_insert(conn, health_events)
        inserted = conn.execute(
            insert.values(
                source=report.source,
                event_key=report.event_key[:200],
                kind=report.kind.value,
                subscriber_id=sid,
                occurrence_id=occurrence_id,
                list_name=",".join(concerned)[:500] or None,
                detail=(report.detail or "")[:200] or None,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(health_events.c.id)
        ).first()
        if inserted is None:
            return Applied(False, report.kind, sid)
        if sid is None:
            return Applied(True, report.kind, None)
        kind = report.kind
        if kind == HealthKind.SOFT_BOUNCE and _soft_bounces(conn, sid, now, policy) >= (
            policy.soft_bounce_limit
        ):
            _suppress(conn, sid, MembershipStatus.BOUNCED, SuppressionReason.BOUNCED, now)
            return Applied(True, kind, sid, suppressed=True)
        if kind == HealthKind.HARD_BOUNCE:
            _suppress(conn, sid, MembershipStatus.BOUNCED, SuppressionReason.BOUNCED, now)
            return Applied(True, kind, sid, suppressed=True)
        if kind == HealthKind.COMPLAINT:
            _suppress(conn, sid, MembershipStatus.COMPLAINED, SuppressionReason.COMPLAINED, now)
            return Applied(True, kind, sid, suppressed=True)
        if kind == HealthKind.UNSUBSCRIBE:
            for name in concerned:
                _unsubscribe(conn, sid, name, now)
            return Applied(True, kind, sid, lists=tuple(concerned))
        return Applied(True, kind, sid)


def _who(conn: sa.Connection, report: Report) -> tuple[int | None, str | None]:
    """(subscriber id, occurrence id) of the report, from its most trustworthy handle."""
    d = deliveries.c
    row = None
    if report.delivery_id is not None:
        row = conn.execute(
            sa.select(d.subscriber_id, d.occurrence_id).where(d.id == report.delivery_id)
        ).first()
    elif report.message_id:
        row = conn.execute(
            sa.select(d.subscriber_id, d.occurrence_id)
            .where(d.message_id == report.message_id.strip())
            .where(d.subscriber_id.is_not(None))
            .limit(1)
        ).first()
    sid = report.subscriber_id
    occurrence_id = report.occurrence_id
    if row is not None:
        sid = sid if sid is not None else row[0]
        occurrence_id = row[1]
    if sid is None and report.email:
        sid = conn.scalar(
            sa.select(subscribers.c.id).where(subscribers.c.email_key == address_key(report.email))
        )
    elif sid is not None:
        # The subscriber may have been erased since the message went out.
        sid = conn.scalar(sa.select(subscribers.c.id).where(subscribers.c.id == sid))
    return sid, occurrence_id


def _campaign_lists(
    conn: sa.Connection, config: Config, occurrence_id: str | None
) -> Sequence[str]:
    if occurrence_id is None:
        return ()
    campaign_id = conn.scalar(
        sa.select(occurrences.c.campaign).where(occurrences.c.id == occurrence_id)
    )
    campaign = config.campaigns.get(str(campaign_id)) if campaign_id else None
    return tuple(campaign.audience) if campaign else ()


def _soft_bounces(conn: sa.Connection, sid: int, now: dt.datetime, policy: Policy) -> int:
    # One per message: a message that soft-bounces at several servers or is reported twice
    # (a DSN and a provider event) counts once. Without a known occurrence, each report.
    e = health_events.c
    query = (
        sa.select(sa.func.count(sa.distinct(sa.func.coalesce(e.occurrence_id, e.event_key))))
        .where(e.subscriber_id == sid)
        .where(e.kind == HealthKind.SOFT_BOUNCE.value)
        .where(e.created_at > now - policy.soft_bounce_window)
    )
    return int(conn.scalar(query) or 0)


def _suppress(
    conn: sa.Connection,
    sid: int,
    status: MembershipStatus,
    reason: SuppressionReason,
    now: dt.datetime,
) -> None:
    key = conn.scalar(sa.select(subscribers.c.email_key).where(subscribers.c.id == sid))
    if key is not None:
        insert = dialect_insert(conn, suppressions)
        conn.execute(
            insert.values(
                email_key=key, reason=reason.value, created_at=now
            ).on_conflict_do_nothing()
        )
    conn.execute(
        sa.update(memberships)
        .where(memberships.c.subscriber_id == sid)
        .where(memberships.c.status.in_(_OPEN))
        .values(status=status.value, updated_at=now)
    )


def _unsubscribe(conn: sa.Connection, sid: int, list_name: str, now: dt.datetime) -> None:
    conn.execute(
        dialect_insert(conn, lists).values(name=list_name, created_at=now).on_conflict_do_nothing()
    )
    insert = dialect_insert(conn, memberships)
    c = memberships.c
    conn.execute(
        insert.values(
            subscriber_id=sid,
            list_name=list_name,
            status=MembershipStatus.UNSUBSCRIBED.value,
            source="unsubscribe",
            subscribed_at=now,
            updated_at=now,
        ).on_conflict_do_update(
            index_elements=[c.subscriber_id, c.list_name],
            set_={"status": insert.excluded.status, "updated_at": insert.excluded.updated_at},
            where=c.status.in_(_OPEN),
        )
    )
