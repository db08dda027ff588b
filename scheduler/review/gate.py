"""The one question the clock asks before firing: which of these due occurrences must wait
for an approval? An occurrence that needs review and has no valid approval is held, not sent;
`clock.policy.decide` keeps it waiting inside its catch-up window and records it missed after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from sqlalchemy.engine import Engine

from scheduler.calendar import Occurrence
from scheduler.config.project import Project
from scheduler.delivery import clock_state
from scheduler.delivery.ledger import OccurrenceRow
from scheduler.review.approvals import status
from scheduler.review.policy import has_approvers, review_for


def unapproved(
    project: Project,
    engine: Engine,
    occurrences: Iterable[Occurrence],
    known: Mapping[str, OccurrenceRow],
    now: dt.datetime,
) -> dict[str, str]:
    """Occurrence id -> why it is held, for the due ones not yet in the store that need an
    approval they do not have. Rendering happens only for those that need review."""
    approvers_exist = has_approvers(engine)
    held: dict[str, str] = {}
    for occ in occurrences:
        if occ.instant > now or occ.id in known:
            continue
        if review_for(project.config, occ, approvers_exist) is None:
            continue
        found = status(project, engine, occ, approvers_exist=approvers_exist)
        if found.approved:
            continue
        if found.problem:
            held[occ.id] = found.problem
        elif found.voided and not found.valid:
            held[occ.id] = "the content changed after its approval; approve it again"
        else:
            held[occ.id] = f"waiting for {found.missing} approval(s)"
    return held


def why_not_yet(project: Project, engine: Engine, occ: Occurrence) -> str | None:
    """Why a send by hand must wait for review now, or None. One already claimed (resumed
    or settled) passed the gate, or never needed it, when it first fired."""
    known = clock_state.known(engine, [occ.id])
    at = max(occ.instant, dt.datetime.now(dt.UTC))
    return unapproved(project, engine, [occ], known, at).get(occ.id)
