"""Who approved which content of an occurrence, and whether that still holds."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.accounts import audit
from scheduler.accounts.actor import Actor
from scheduler.accounts.store import Account
from scheduler.calendar import Occurrence
from scheduler.config.model import Review
from scheduler.config.project import Project
from scheduler.errors import ReviewError
from scheduler.review.content import Content, render_content
from scheduler.review.policy import has_approvers, review_for
from scheduler.store.db import dialect_insert, writer
from scheduler.store.schema import approvals, utcnow

P = approvals.c


@dataclass(frozen=True, slots=True)
class Approval:
    approver: str
    fingerprint: str
    content: str
    approved_at: dt.datetime


@dataclass
class ReviewStatus:
    occurrence: Occurrence
    review: Review | None  # None: no review needed
    content: Content | None  # None when it cannot be rendered (see `problem`)
    problem: str | None = None
    valid: list[Approval] = field(default_factory=list)  # approvals of the current content
    voided: list[Approval] = field(default_factory=list)  # approvals of an older content

    @property
    def needed(self) -> bool:
        return self.review is not None

    @property
    def approved(self) -> bool:
        if self.review is None:
            return True
        return self.content is not None and len(self.valid) >= self.review.approvers

    @property
    def missing(self) -> int:
        return 0 if self.review is None else max(0, self.review.approvers - len(self.valid))

    def diff(self) -> str:
        """What changed since the newest voided approval, as a unified diff ('' if nothing)."""
        if not self.voided or self.content is None:
            return ""
        before = self.voided[0]
        return "".join(
            difflib.unified_diff(
                before.content.splitlines(keepends=True),
                self.content.text.splitlines(keepends=True),
                fromfile=f"approved by {before.approver} {before.approved_at:%Y-%m-%d %H:%M}Z",
                tofile="now",
            )
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "occurrence": self.occurrence.id,
            "review_required": self.needed,
            "approvers_needed": self.review.approvers if self.review else 0,
            "approved": self.approved,
            "fingerprint": self.content.fingerprint if self.content else None,
            "problem": self.problem,
            "approvals": [
                {"approver": a.approver, "at": a.approved_at.isoformat()} for a in self.valid
            ],
            "voided": [
                {"approver": a.approver, "at": a.approved_at.isoformat()} for a in self.voided
            ],
            "diff": self.diff(),
        }


def _approvals(engine: Engine, occurrence_id: str) -> list[Approval]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(approvals)
            .where(P.occurrence_id == occurrence_id)
            .order_by(P.approved_at.desc(), P.id.desc())
        )
        return [Approval(r.approver, r.fingerprint, r.content, r.approved_at) for r in rows]


def status(
    project: Project, engine: Engine, occ: Occurrence, *, approvers_exist: bool | None = None
) -> ReviewStatus:
    if approvers_exist is None:
        approvers_exist = has_approvers(engine)
    review = review_for(project.config, occ, approvers_exist)
    try:
        content: Content | None = render_content(project, occ)
        problem = None
    except Exception as e:  # a broken template cannot be approved, and will not fire
        content, problem = None, f"cannot render: {e}"
    found = ReviewStatus(occ, review, content, problem)
    allowed = {a.lower() for a in review.by} if review else set()
    for approval in _approvals(engine, occ.id):
        current = content is not None and approval.fingerprint == content.fingerprint
        counts = not allowed or approval.approver.lower() in allowed
        if current and counts:
            found.valid.append(approval)
        elif not current:
            found.voided.append(approval)
    return found


def approve(
    project: Project, engine: Engine, occ: Occurrence, account: Account, actor: Actor
) -> ReviewStatus:
    """Record `account`'s approval of what `occ` will send now. The caller checked the role
    (`accounts.scope.require(..., approve=True)`)."""
    found = status(project, engine, occ)
    if found.review is None:
        raise ReviewError(f"{occ.id} needs no review")
    if found.content is None:
        raise ReviewError(f"{occ.id} cannot be approved: {found.problem}")
    if found.review.by and account.email.lower() not in {a.lower() for a in found.review.by}:
        raise ReviewError(
            f"{account.email} is not one of the approvers of {occ.id}: {', '.join(found.review.by)}"
        )
    if any(a.approver.lower() == account.email.lower() for a in found.valid):
        raise ReviewError(f"{account.email} approved this content of {occ.id} already")
    with writer(engine).begin() as conn:
        conn.execute(
            dialect_insert(conn, approvals)
            .values(
                occurrence_id=occ.id,
                fingerprint=found.content.fingerprint,
                content=found.content.text,
                approver=account.email,
                approved_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
    audit.record(
        engine,
        actor=actor.name,
        action="occurrence.approve",
        target=occ.id,
        detail=f"fingerprint={found.content.fingerprint[:16]}",
        origin=actor.origin,
    )
    return status(project, engine, occ)
