"""What an organizer can do to the schedule, from the CLI or the dashboard: the same functions,
each recording itself in the audit log. Who may do it is checked by the caller
(`accounts.scope.require`); these functions only do it and say what happened."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.accounts import audit
from scheduler.accounts.actor import Actor as Actor  # where callers have taken it from
from scheduler.calendar import Occurrence
from scheduler.config.model import Config
from scheduler.config.project import Project
from scheduler.delivery import channel_state, clock_state, ledger
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.fire import FireReport, fire, fire_still_planned
from scheduler.delivery.guard import SendTimeProblem, check_send_time
from scheduler.delivery.retry import RetryReport, retry_failed


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    message: str


def pause(engine: Engine, campaign: str, actor: Actor, note: str | None = None) -> Outcome:
    changed = clock_state.pause(engine, campaign, note)
    if changed:
        audit.record(
            engine,
            actor=actor.name,
            action="campaign.pause",
            target=campaign,
            detail=note,
            origin=actor.origin,
        )
    return Outcome(changed, f"{campaign}: {'paused' if changed else 'already paused'}")


def resume(engine: Engine, campaign: str, actor: Actor) -> Outcome:
    changed = clock_state.resume(engine, campaign)
    if changed:
        audit.record(
            engine, actor=actor.name, action="campaign.resume", target=campaign, origin=actor.origin
        )
    return Outcome(changed, f"{campaign}: {'resumed' if changed else 'was not paused'}")


def cancel(engine: Engine, config: Config, occurrence_id: str, actor: Actor) -> Outcome:
    """Raises UnknownCampaignError for an occurrence campaigns.yaml does not have."""
    occ = calendar.occurrence(config, occurrence_id)
    if clock_state.cancel(engine, occ, note=f"cancelled by {actor.name}"):
        audit.record(
            engine, actor=actor.name, action="occurrence.cancel", target=occ.id, origin=actor.origin
        )
        return Outcome(True, f"{occ.id}: cancelled")
    row = ledger.get_occurrence(engine, occ.id)
    return Outcome(
        False, f"{occ.id} is already {row.state if row else 'settled'}; nothing to cancel"
    )


# --- sending by hand ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendCheck:
    """What stands between an organizer and a send by hand: an approval it still needs (a
    refusal), a time far from its instant (a question: the CLI's prompt or `--now`, the
    dashboard's confirmation form), and the note the send records on what it starts."""

    review: str | None  # why it must wait for an approval; None: it may go
    timing: SendTimeProblem | None  # None: sending now is ordinary
    note: str | None

    def confirmed_note(self) -> str | None:
        """The note once the organizer confirmed the timing (or there was nothing to ask)."""
        if self.timing is None:
            return self.note
        return f"sent by hand {self.timing.timing.value}: {self.timing.message}"


def check_send(
    project: Project, engine: Engine, occ: Occurrence, channels: Sequence[str], now: dt.datetime
) -> SendCheck:
    """Ask before sending `channels` of the occurrence by hand (see `delivery.guard`): the
    timing matters only for channels this send would start, not for a resume."""
    from scheduler.review.gate import why_not_yet

    progress = channel_state.occurrence_progress(engine, occ.id, occ.channels)
    starting = [p for p in progress if p.channel in channels and p.state in ("planned", "missed")]
    row = ledger.get_occurrence(engine, occ.id)
    note = (
        f"sent by hand after being missed ({row.note})"
        if row is not None and row.state == "missed"
        else None
    )
    return SendCheck(
        review=why_not_yet(project, engine, occ),
        timing=check_send_time(project.config, occ, now) if starting else None,
        note=note,
    )


def send_now(
    ctx: DeliveryContext,
    occ: Occurrence,
    actor: Actor,
    *,
    channels: Sequence[str] | None = None,
    note: str | None = None,
    **options: Any,
) -> FireReport:
    """Fire `channels` (default: the step's) now, a missed one too. The caller asked
    `check_send` first; `options` go to `delivery.fire.fire` (progress, dispatch...)."""
    wanted = list(channels or occ.channels)
    audit.record(
        ctx.engine,
        actor=actor.name,
        action="occurrence.send",
        target=occ.id,
        detail=f"channels={','.join(wanted)}" + (f"; {note}" if note else ""),
        origin=actor.origin,
    )
    return fire(ctx, occ, channels=wanted, revive_missed=True, note=note, **options)


def send_still_planned(
    ctx: DeliveryContext, occ: Occurrence, actor: Actor, *, note: str | None = None, **options: Any
) -> FireReport:
    """Fire the channels of the step nobody has fired yet (after some went by hand)."""
    planned = still_planned(ctx.engine, occ)
    audit.record(
        ctx.engine,
        actor=actor.name,
        action="occurrence.send_planned",
        target=occ.id,
        detail=f"channels={','.join(planned) or '-'}" + (f"; {note}" if note else ""),
        origin=actor.origin,
    )
    return fire_still_planned(ctx, occ, note=note, **options)


def still_planned(engine: Engine, occ: Occurrence) -> list[str]:
    known = channel_state.rows(engine, [occ.id]).get(occ.id, {})
    return channel_state.still_planned(occ.channels, known)


def retry(
    ctx: DeliveryContext,
    occurrence_id: str,
    actor: Actor,
    *,
    channels: Sequence[str] | None = None,
    **options: Any,
) -> RetryReport:
    """Send the failed deliveries of the occurrence (or of `channels`) again. Raises
    UnknownCampaignError for one never fired or cancelled (nothing is recorded then)."""
    report = retry_failed(ctx, occurrence_id, channels=channels, **options)
    audit.record(
        ctx.engine,
        actor=actor.name,
        action="occurrence.retry",
        target=occurrence_id,
        detail=f"channels={','.join(channels) if channels else 'all'}; requeued={report.total}",
        origin=actor.origin,
    )
    return report
