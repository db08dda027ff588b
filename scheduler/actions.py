"""What an organizer can do to the schedule, from the CLI or the dashboard: the same functions,
each recording itself in the audit log. Who may do it is checked by the caller
(`accounts.scope.require`); these functions only do it and say what happened."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.accounts import audit
from scheduler.config.model import Config
from scheduler.delivery import ledger


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from where: an account's address and the client's IP, or `cli:user`."""

    name: str
    origin: str = "cli"


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    message: str


def pause(engine: Engine, campaign: str, actor: Actor, note: str | None = None) -> Outcome:
    from scheduler.clock import state as clock_state

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
    from scheduler.clock import state as clock_state

    changed = clock_state.resume(engine, campaign)
    if changed:
        audit.record(
            engine, actor=actor.name, action="campaign.resume", target=campaign, origin=actor.origin
        )
    return Outcome(changed, f"{campaign}: {'resumed' if changed else 'was not paused'}")


def cancel(engine: Engine, config: Config, occurrence_id: str, actor: Actor) -> Outcome:
    """Raises UnknownCampaignError for an occurrence campaigns.yaml does not have."""
    from scheduler.clock import state as clock_state

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
