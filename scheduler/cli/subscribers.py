"""`subscribers forget|export|retention`: a person's rights over their data."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from scheduler.console import fail, out, print_json, store, valid_project

subscribers_app = typer.Typer(
    help="A subscriber's data: export it, erase it, and the retention rule.",
    no_args_is_help=True,
)

EmailArg = Annotated[str, typer.Argument(metavar="EMAIL", help="the person's address")]


@subscribers_app.command("export")
def export_command(email: EmailArg) -> None:
    """Print everything held about EMAIL as JSON (exit 1 if nothing is)."""
    from scheduler.listhealth import privacy

    data = privacy.export(store(), email)
    if data is None:
        fail(f"nothing is held about {email}")
    print_json(data)


@subscribers_app.command("forget")
def forget_command(
    email: EmailArg,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Erase EMAIL everywhere: the subscriber, their memberships, their deliveries' link to
    them. A keyed hash stays in the suppressions, so no CSV import adds them back."""
    from scheduler.listhealth import privacy

    if not yes and not typer.confirm(f"Erase {email} from every table? This cannot be undone"):
        raise typer.Exit(1)
    result = privacy.forget(store(), email)
    if as_json:
        print_json(
            {
                "email": email,
                "found": result.found,
                "deliveries": result.deliveries,
                "memberships": result.memberships,
            }
        )
        return
    if result.found:
        out.print(
            f"erased {email}: {result.memberships} membership(s) removed, "
            f"{result.deliveries} delivery row(s) no longer name them; "
            "imports will skip the address",
            markup=False,
        )
    else:
        out.print(
            f"{email} was not a subscriber; imports will skip the address from now on",
            markup=False,
        )


@subscribers_app.command("retention")
def retention_command(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="age in days (default: settings.retention_days, 180)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Cut email deliveries (and bounce reports) older than the retention age loose from
    the people they concern. Run it daily, e.g. from cron."""
    from scheduler.listhealth import privacy

    project = valid_project()
    age = days or project.config.settings.retention_days
    changed = privacy.apply_retention(store(), older_than=dt.timedelta(days=age))
    if as_json:
        print_json({"days": age, "deliveries": changed})
    else:
        out.print(f"{changed:,} delivery row(s) older than {age} days pseudonymized", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(subscribers_app, name="subscribers")
