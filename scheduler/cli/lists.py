"""`lists import|show`: subscribers in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from scheduler.audience.csvfile import iter_csv
from scheduler.config.diagnostics import did_you_mean
from scheduler.console import err, fail, out, print_json, store, valid_project
from scheduler.delivery.addresses import DeliverableRows
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
    """Add or update subscribers from a CSV file. Never resubscribes anyone who left.

    Bad rows are left out with a warning (FILE:LINE:COL); the good rows are imported."""
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
    voice = project.config.list_voice(list_name)
    # Read and merged at once: each batch merges on the server while the next is read.
    rows = DeliverableRows(
        project,
        iter_csv(file, languages=list(voice.languages), default_language=voice.default_language),
    )
    engine = store()
    file_lines = _lines_after_header(file)
    with Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json or file_lines < 2000,
    ) as bar:
        # The file's lines stand in for its rows until the end (blank lines, rows split over
        # lines by quotes and rejected rows make the two differ): then the bar is full.
        task = bar.add_task("import", total=file_lines)
        report = subscribers.import_rows(
            engine,
            list_name,
            rows,
            source=str(file),
            status=status,
            progress=lambda n: bar.update(task, completed=min(n, file_lines)),
        )
        bar.update(task, total=max(rows.rows, 1), completed=max(rows.rows, 1))
    if not as_json:
        for problem in rows.problems:
            err.print(problem.to_diagnostic(str(file)).format(), markup=False)
    data = {
        "list": list_name,
        "rows": rows.rows + len(rows.problems),
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped_suppressed": report.skipped_suppressed,
        "skipped_unsubscribed": report.skipped_unsubscribed,
        "rejected": len(rows.problems),
        "problems": [p.to_json(str(file)) for p in rows.problems],
    }
    if as_json:
        print_json(data)
    else:
        out.print(
            f"{list_name}: {report.inserted:,} added, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged, {report.skipped_unsubscribed:,} left alone "
            f"(unsubscribed or bounced), {report.skipped_suppressed:,} suppressed, "
            f"{len(rows.problems):,} rejected rows",
            markup=False,
        )
    if rows.problems:
        n = len(rows.problems)
        lines = sorted({p.row for p in rows.problems})
        shown = ", ".join(str(x) for x in lines[:5]) + (", ..." if len(lines) > 5 else "")
        if not as_json:
            err.print(
                f"{n:,} row problem{'s' if n != 1 else ''} (line{'s' if len(lines) != 1 else ''} "
                f"{shown}): those rows were left out, the others were imported. Fix them and "
                "import again.",
                markup=False,
            )
        if not rows.rows:
            raise typer.Exit(1)  # nothing could be read: the file itself is the problem


def _lines_after_header(file: Path) -> int:
    """The file's lines but the first: what the progress bar counts to (a 100 MB file is
    counted in a tenth of a second)."""
    n = 0
    last = b"\n"
    with open(file, "rb") as stream:
        while chunk := stream.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        n += 1  # the last line has no line break
    return max(n - 1, 0)


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
