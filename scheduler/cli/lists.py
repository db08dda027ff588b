"""`lists import|show`: subscribers in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from scheduler.audience.csvfile import read_csv
from scheduler.config.diagnostics import did_you_mean
from scheduler.console import err, fail, out, print_json, store, valid_project
from scheduler.delivery.addresses import refuse_undeliverable
from scheduler.store import subscribers

lists_app = typer.Typer(
    help="Subscribers: import CSV files, count by status.", no_args_is_help=True
)


# --- lists ---------------------------------------------------------------------------------


@lists_app.command("import")
def lists_import(
    list_name: Annotated[str, typer.Argument(metavar="LIST", help="a list from campaigns.yaml")],
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="email,name,language,... ")],
    status: Annotated[
        str, typer.Option(help="status for new members: active or unconfirmed")
    ] = "active",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Add or update subscribers from a CSV file. Never resubscribes anyone who left."""
    project = valid_project()
    if list_name not in project.config.lists:
        fail(
            f"unknown list {list_name!r}; "
            + (
                did_you_mean(list_name, list(project.config.lists))
                or f"lists: {', '.join(project.config.lists)}"
            ),
            2,
        )
    if status not in ("active", "unconfirmed"):
        fail("--status must be 'active' or 'unconfirmed'", 2)
    if not file.is_file():
        fail(f"{file}: file not found", 2)
    org = project.config.organization
    result = read_csv(file, languages=org.languages, default_language=org.default_language)
    result = refuse_undeliverable(project, result)
    for problem in result.problems:
        err.print(problem.to_diagnostic(str(file)).format(), markup=False)
    engine = store()
    with Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json or len(result.rows) < 2000,
    ) as bar:
        task = bar.add_task("import", total=len(result.rows))
        report = subscribers.import_rows(
            engine,
            list_name,
            result.rows,
            source=str(file),
            status=status,
            progress=lambda n: bar.update(task, completed=n),
        )
    data = {
        "list": list_name,
        "rows": len(result.rows) + len(result.problems),
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped_suppressed": report.skipped_suppressed,
        "skipped_unsubscribed": report.skipped_unsubscribed,
        "rejected": len(result.problems),
    }
    if as_json:
        print_json(data)
    else:
        out.print(
            f"{list_name}: {report.inserted:,} added, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged, {report.skipped_unsubscribed:,} left alone "
            f"(unsubscribed or bounced), {report.skipped_suppressed:,} suppressed, "
            f"{len(result.problems):,} rejected rows",
            markup=False,
        )
    if result.problems:
        raise typer.Exit(1)


@lists_app.command("show")
def lists_show(
    list_name: Annotated[str | None, typer.Argument(metavar="[LIST]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Count subscribers of each list by status."""
    project = valid_project()
    engine = store()
    counts = subscribers.list_counts(engine, list_name)
    names = [list_name] if list_name else list(dict.fromkeys([*project.config.lists, *counts]))
    data = {n: counts.get(n, {}) for n in names}
    if as_json:
        print_json(data)
        return
    statuses = ("active", "unconfirmed", "unsubscribed", "bounced", "complained")
    table = Table(title="Lists", title_justify="left")
    table.add_column("List", no_wrap=True)
    for s in statuses:
        table.add_column(s, justify="right")
    for n in names:
        table.add_row(n, *(f"{data[n].get(s, 0):,}" for s in statuses))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app, name="lists")
