"""`mailbox`: read the bounce mailbox once (bounces, complaints, mailto unsubscribes)."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler.console import out, print_json, store, valid_project


def mailbox_command(
    url: Annotated[
        str | None,
        typer.Option(
            help="imaps://USER@HOST:993/INBOX?processed=Processed, imap:// (STARTTLS), "
            "pop3s://, pop3:// (STLS) [env: SCHEDULER_MAILBOX_URL; password in the URL or "
            "SCHEDULER_MAILBOX_PASSWORD]",
        ),
    ] = None,
    cafile: Annotated[
        str | None,
        typer.Option(help="trust this CA bundle (PEM) instead of the system's, e.g. a private CA"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the counts as JSON")] = False,
) -> None:
    """Read the bounce mailbox: hard bounces suppress, soft bounces are scored, complaints
    suppress, mailto unsubscribes unsubscribe. Each message is applied once, then moved to
    the processed folder; a message nothing can be made of stays, flagged, and is counted."""
    # Here, not at the top: every command would pay for the IMAP, POP3 and bounce parsers.
    from scheduler.listhealth import mailbox

    project = valid_project()
    engine = store()
    box_url = mailbox.from_env(url)
    with mailbox.open_box(box_url, cafile=cafile) as box:
        report = mailbox.process(engine, project.config, box)
    counts = report.as_dict()
    if as_json:
        print_json(counts)
        return
    out.print(
        f"{box_url.user}@{box_url.host}/{box_url.folder}: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    )
    if counts["unparseable"]:
        out.print(
            f"{counts['unparseable']} message(s) could not be read and stay in "
            f"{box_url.folder}, flagged, for a person to look at."
        )


def register(app: typer.Typer) -> None:
    app.command("mailbox")(mailbox_command)
