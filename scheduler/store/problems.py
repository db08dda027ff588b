"""What the last look at the project found wrong, kept so `status` and the dashboard can say it:
rows of a list left out at its last sync, and campaigns blocked by a problem of their own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.errors import Diagnostic
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import problems, utcnow

P = problems.c
LIST = "list"
CAMPAIGN = "campaign"
KEPT = 10  # problems kept per subject; the count says how many there were


@dataclass(frozen=True, slots=True)
class ProblemRow:
    kind: str
    subject: str
    file: str | None
    count: int
    detail: list[dict[str, Any]]
    since: dt.datetime
    updated_at: dt.datetime

    @property
    def lines(self) -> list[int]:
        return [int(d["line"]) for d in self.detail if d.get("line")]


def _detail(diagnostics: Sequence[Diagnostic]) -> list[dict[str, Any]]:
    return [
        {"file": d.file, "line": d.line, "column": d.column, "message": d.message}
        for d in diagnostics[:KEPT]
    ]


def _put(
    conn: sa.Connection, kind: str, subject: str, file: str | None, found: Sequence[Diagnostic]
) -> None:
    now = utcnow()
    values = {"file": file, "count": len(found), "detail": _detail(found), "updated_at": now}
    insert = dialect_insert(conn, problems)
    conn.execute(
        insert.values(kind=kind, subject=subject, since=now, **values).on_conflict_do_update(
            index_elements=["kind", "subject"], set_=values
        )
    )


def record_list(engine: Engine, name: str, file: str, found: Sequence[Diagnostic]) -> None:
    """The rows of list `name` left out at this sync; none clears what an earlier sync found."""
    with writer(engine).begin() as conn:
        if found:
            _put(conn, LIST, name, file, found)
        else:
            conn.execute(sa.delete(problems).where(P.kind == LIST, P.subject == name))


def record_blocked(engine: Engine, blocked: Mapping[str, Sequence[Diagnostic]]) -> None:
    """The campaigns blocked now; a campaign no longer blocked is cleared. `since` is kept."""
    with writer(engine).begin() as conn:
        conn.execute(sa.delete(problems).where(P.kind == CAMPAIGN, P.subject.not_in(list(blocked))))
        for campaign, found in blocked.items():
            _put(conn, CAMPAIGN, campaign, found[0].file if found else None, found)


def current(engine: Engine, kind: str | None = None) -> list[ProblemRow]:
    query = sa.select(problems).order_by(P.kind, P.subject)
    if kind is not None:
        query = query.where(P.kind == kind)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        ProblemRow(
            kind=r.kind,
            subject=r.subject,
            file=r.file,
            count=int(r._mapping["count"]),
            detail=list(r.detail or []),
            since=_aware(r.since),
            updated_at=_aware(r.updated_at),
        )
        for r in rows
    ]


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def blocked_reasons(rows: Sequence[ProblemRow]) -> dict[str, str]:
    """campaign -> the first problem that blocks it (`file:line: message`, and how many more)."""
    out: dict[str, str] = {}
    for r in rows:
        if r.kind != CAMPAIGN:
            continue
        first = r.detail[0] if r.detail else {}
        where = f"{first.get('file')}:{first.get('line')}: " if first.get("line") else ""
        more = f" (and {r.count - 1} more)" if r.count > 1 else ""
        out[r.subject] = f"{where}{first.get('message', 'blocked')}{more}"
    return out


BLOCKED = "blocked"  # a state shown, never stored: see `shown_state`


def shown_state(
    state: str, campaign: str, note: str | None, blocked: Mapping[str, str]
) -> tuple[str, str | None]:
    """The state to show for an occurrence row and, when blocked, why. The store keeps a
    blocked occurrence `planned` (so a fix inside its catch-up window fires it late); only
    the clock writes `planned` rows, when it finds the campaign blocked at its instant, so
    such a row is shown as `blocked`, with the campaign's current problem (or the note)."""
    if state == "planned" and (campaign in blocked or (note or "").startswith("blocked")):
        return BLOCKED, blocked.get(campaign) or note
    return state, None
