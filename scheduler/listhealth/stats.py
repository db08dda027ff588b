"""Bounces, complaints and unsubscribes counted per occurrence and per list over time, for
`scheduler status` and the dashboard.

Per occurrence: the reports that name a delivery of it (mailbox, webhooks with our
Message-ID) plus the refusals at RCPT time, which the ledger records as `bounced:` failures.
Per list: membership changes by week, whatever made them (a bounce, a complaint, a click on
the one-click link, a mailto request), from the memberships' own status and time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.store.schema import (
    DeliveryState,
    HealthKind,
    MembershipStatus,
    deliveries,
    health_events,
    memberships,
    utcnow,
)


@dataclass
class Health:
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0

    @property
    def bounces(self) -> int:
        return self.hard_bounces + self.soft_bounces

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def any(self) -> bool:
        return bool(self.bounces or self.complaints or self.unsubscribes)


_FIELD = {
    HealthKind.HARD_BOUNCE.value: "hard_bounces",
    HealthKind.SOFT_BOUNCE.value: "soft_bounces",
    HealthKind.COMPLAINT.value: "complaints",
    HealthKind.UNSUBSCRIBE.value: "unsubscribes",
}


def by_occurrence(engine: Engine, occurrence_ids: Iterable[str]) -> dict[str, Health]:
    ids = list(occurrence_ids)
    result = {i: Health() for i in ids}
    if not ids:
        return result
    e, d = health_events.c, deliveries.c
    reports = (
        sa.select(e.occurrence_id, e.kind, sa.func.count())
        .where(e.occurrence_id.in_(ids), e.kind.in_(list(_FIELD)))
        .group_by(e.occurrence_id, e.kind)
    )
    refused = (
        sa.select(d.occurrence_id, sa.func.count())
        .where(
            d.occurrence_id.in_(ids),
            d.state == DeliveryState.FAILED.value,
            d.last_error.like("bounced:%"),
        )
        .group_by(d.occurrence_id)
    )
    with engine.connect() as conn:
        for occurrence_id, kind, n in conn.execute(reports):
            health = result[occurrence_id]
            setattr(health, _FIELD[kind], getattr(health, _FIELD[kind]) + int(n))
        for occurrence_id, n in conn.execute(refused):
            result[occurrence_id].hard_bounces += int(n)
    return result


_LIST_FIELD = {
    MembershipStatus.BOUNCED.value: "hard_bounces",
    MembershipStatus.COMPLAINED.value: "complaints",
    MembershipStatus.UNSUBSCRIBED.value: "unsubscribes",
}


def week_of(moment: dt.datetime) -> dt.date:
    """The Monday of the (UTC) week of `moment`."""
    day = moment.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


def by_list(
    engine: Engine, *, weeks: int = 12, now: dt.datetime | None = None
) -> dict[str, dict[dt.date, Health]]:
    """list -> Monday of each week (the last `weeks`, newest first, only weeks with
    something) -> what left that list that week. Soft bounces do not change a membership
    and so are not counted here (see by_occurrence)."""
    now = now or utcnow()
    since = dt.datetime.combine(
        week_of(now) - dt.timedelta(weeks=weeks - 1), dt.time(), tzinfo=dt.UTC
    )
    m = memberships.c
    query = sa.select(m.list_name, m.status, m.updated_at).where(
        m.status.in_(list(_LIST_FIELD)), m.updated_at >= since
    )
    result: dict[str, dict[dt.date, Health]] = {}
    with engine.connect() as conn:
        for list_name, status, updated_at in conn.execute(query):
            week = result.setdefault(list_name, {}).setdefault(week_of(updated_at), Health())
            field = _LIST_FIELD[status]
            setattr(week, field, getattr(week, field) + 1)
    return {
        name: dict(sorted(weeks_.items(), reverse=True)) for name, weeks_ in sorted(result.items())
    }
