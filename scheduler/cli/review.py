"""`review OCCURRENCE`: what it will send, who approved it, what changed since;
`approve OCCURRENCE --as EMAIL`: approve it as an approver account (its password is asked)."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler import calendar
from scheduler.accounts import passwords, scope
from scheduler.accounts import store as accounts
from scheduler.accounts.actor import Actor
from scheduler.console import fail, out, print_json, store, valid_project
from scheduler.errors import NotAllowedError, ReviewError, UnknownCampaignError
from scheduler.review import approvals, holds


def review_command(
    occurrence_id: Annotated[str, typer.Argument(metavar="OCCURRENCE")],
    content: Annotated[
        bool, typer.Option("--content", help="print everything it will send")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Whether an occurrence needs review, who approved it, and a diff of what changed since."""
    project = valid_project()
    try:
        occ = calendar.occurrence(project.config, occurrence_id)
    except UnknownCampaignError as e:
        fail(str(e), 2)
    engine = store()
    found = approvals.status(project, engine, occ)
    hold = holds.get(engine, occ.id)
    if as_json:
        data = found.as_json()
        data["held"] = hold is not None and hold.released_at is None
        if content:
            data["content"] = found.content.text if found.content else None
        print_json(data)
        return
    if not found.needed:
        out.print(f"{occ.id}: no review required", markup=False)
    else:
        assert found.review is not None
        verdict = "approved" if found.approved else f"needs {found.missing} more approval(s)"
        out.print(
            f"{occ.id}: review required ({found.review.approvers} approver(s)); {verdict}",
            markup=False,
        )
        if found.review.by:
            out.print(f"may approve: {', '.join(found.review.by)}", markup=False)
    if hold is not None and hold.released_at is None:
        out.print(f"HELD since {hold.held_at:%Y-%m-%d %H:%M} UTC: not sent", markup=False)
    if found.problem:
        out.print(found.problem, markup=False)
    if found.content:
        out.print(f"fingerprint {found.content.fingerprint}", markup=False)
    for a in found.valid:
        out.print(f"approved by {a.approver} at {a.approved_at:%Y-%m-%d %H:%M} UTC", markup=False)
    for a in found.voided:
        out.print(
            f"voided: approval by {a.approver} at {a.approved_at:%Y-%m-%d %H:%M} UTC "
            "(the content changed since)",
            markup=False,
        )
    diff = found.diff()
    if diff:
        out.print("changes since that approval:", markup=False)
        out.print(diff, markup=False, end="")
    if content and found.content:
        out.print(found.content.text, markup=False, end="")


def approve_command(
    occurrence_id: Annotated[str, typer.Argument(metavar="OCCURRENCE")],
    approver: Annotated[str, typer.Option("--as", help="your approver account's address")],
) -> None:
    """Approve exactly what the occurrence will send now; any later change voids it."""
    project = valid_project()
    try:
        occ = calendar.occurrence(project.config, occurrence_id)
    except UnknownCampaignError as e:
        fail(str(e), 2)
    engine = store()
    password: str = typer.prompt(f"password of {approver}", hide_input=True)
    account, password_hash = accounts.password_hash_of(engine, approver)
    if account is None or not passwords.verify(password_hash, password):
        fail("wrong address or password", 1)
    try:
        scope.require(account, project.config, occ.campaign_id, approve=True)
        found = approvals.approve(project, engine, occ, account, Actor(account.email, "cli"))
    except (NotAllowedError, ReviewError) as e:
        fail(str(e), 1)
    state = "approved" if found.approved else f"needs {found.missing} more approval(s)"
    out.print(f"{occ.id}: approved by {account.email}; {state}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("review")(review_command)
    app.command("approve")(approve_command)
