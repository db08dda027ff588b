"""`pause`, `resume`, `cancel`: hold or stop what the clock will fire."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler import actions
from scheduler.accounts import audit
from scheduler.console import fail, known_campaign, out, store, valid_project
from scheduler.errors import UnknownCampaignError


def cli_actor() -> actions.Actor:
    return actions.Actor(audit.cli_actor(), "cli")


def pause_command(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    note: Annotated[str | None, typer.Option(help="why, shown by status")] = None,
) -> None:
    """Stop firing a campaign's occurrences until `resume` (late ones fire inside the
    catch-up window when resumed; older ones are recorded as missed)."""
    project = valid_project()
    known_campaign(project, campaign)
    outcome = actions.pause(store(), campaign, cli_actor(), note)
    out.print(outcome.message, markup=False)


def resume_command(campaign: Annotated[str, typer.Argument(help="campaign id")]) -> None:
    """Fire a paused campaign's occurrences again."""
    project = valid_project()
    known_campaign(project, campaign)
    outcome = actions.resume(store(), campaign, cli_actor())
    out.print(outcome.message, markup=False)


def cancel_command(
    occurrence_id: Annotated[
        str, typer.Argument(metavar="OCCURRENCE", help="e.g. may-day/2027/statement")
    ],
) -> None:
    """Cancel one occurrence: it will not fire; a send in progress stops before its next
    batch, and `status` shows what went out."""
    project = valid_project()
    try:
        outcome = actions.cancel(store(), project.config, occurrence_id, cli_actor())
    except UnknownCampaignError as e:
        fail(str(e), 2)
    if not outcome.changed:
        fail(outcome.message)
    out.print(outcome.message, markup=False)


def register(app: typer.Typer) -> None:
    app.command("pause")(pause_command)
    app.command("resume")(resume_command)
    app.command("cancel")(cancel_command)
