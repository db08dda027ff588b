"""`pause`, `resume`, `cancel`: hold or stop what the clock will fire."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler import calendar
from scheduler.console import fail, known_campaign, out, store, valid_project
from scheduler.delivery import ledger
from scheduler.errors import UnknownCampaignError


def pause_command(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    note: Annotated[str | None, typer.Option(help="why, shown by status")] = None,
) -> None:
    """Stop firing a campaign's occurrences until `resume` (late ones fire inside the
    catch-up window when resumed; older ones are recorded as missed)."""
    from scheduler.clock import state as clock_state

    project = valid_project()
    known_campaign(project, campaign)
    changed = clock_state.pause(store(), campaign, note)
    out.print(f"{campaign}: {'paused' if changed else 'already paused'}", markup=False)


def resume_command(campaign: Annotated[str, typer.Argument(help="campaign id")]) -> None:
    """Fire a paused campaign's occurrences again."""
    from scheduler.clock import state as clock_state

    project = valid_project()
    known_campaign(project, campaign)
    changed = clock_state.resume(store(), campaign)
    out.print(f"{campaign}: {'resumed' if changed else 'was not paused'}", markup=False)


def cancel_command(
    occurrence_id: Annotated[
        str, typer.Argument(metavar="OCCURRENCE", help="e.g. may-day/2027/statement")
    ],
) -> None:
    """Cancel one occurrence: it will not fire; a send in progress stops before its next
    batch, and `status` shows what went out."""
    from scheduler.clock import state as clock_state

    project = valid_project()
    try:
        occ = calendar.occurrence(project.config, occurrence_id)
    except UnknownCampaignError as e:
        fail(str(e), 2)
    engine = store()
    if clock_state.cancel(engine, occ):
        out.print(f"{occ.id}: cancelled", markup=False)
        return
    row = ledger.get_occurrence(engine, occ.id)
    fail(f"{occ.id} is already {row.state if row else 'settled'}; nothing to cancel")


def register(app: typer.Typer) -> None:
    app.command("pause")(pause_command)
    app.command("resume")(resume_command)
    app.command("cancel")(cancel_command)
