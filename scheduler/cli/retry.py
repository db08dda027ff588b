"""`retry`: send an occurrence's failed deliveries again."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler import actions, calendar
from scheduler.cli.control import cli_actor
from scheduler.config.diagnostics import did_you_mean
from scheduler.console import err, fail, out, print_json, store, valid_project
from scheduler.delivery import ledger
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.fire import FireReport, fire
from scheduler.delivery.retry import wait_for_held
from scheduler.errors import UnknownCampaignError


def retry_command(
    occurrence_id: Annotated[str, typer.Argument(help="e.g. may-day/2027/statement")],
    channel: Annotated[
        list[str] | None, typer.Option(help="only these channels (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Send the failed deliveries of an occurrence again: never the bounced, the
    unsubscribed or the sent ones. Each retry is recorded in the ledger."""
    project = valid_project()
    engine = store()
    if ledger.get_occurrence(engine, occurrence_id) is None:
        known = [row.id for row in ledger.list_occurrences(engine, limit=1000)]
        fail(
            f"occurrence {occurrence_id!r} has not been sent; "
            + (did_you_mean(occurrence_id, known) or "`scheduler status` lists the sent ones"),
            2,
        )
    channels = list(channel or [])
    unknown = [c for c in channels if c not in project.config.channels]
    if unknown:
        fail(
            f"unknown channel {unknown[0]!r}; "
            + (
                did_you_mean(unknown[0], list(project.config.channels))
                or f"channels: {', '.join(project.config.channels)}"
            ),
            2,
        )
    ctx = DeliveryContext(project, engine)
    try:
        report = actions.retry(ctx, occurrence_id, cli_actor(), channels=channels or None)
        if report.fired is not None:
            fired = report.fired
            report.fired = wait_for_held(
                fired,
                lambda: retry_again(ctx, occurrence_id, sorted(report.requeued)),
                on_wait=lambda held, until: err.print(
                    f"{held:,} deliveries are held by another sender; waiting for its lease",
                    markup=False,
                ),
            )
    except UnknownCampaignError as e:
        fail(str(e), 2)
    finally:
        ctx.close()
    result = report.fired.result if report.fired else None
    data = {
        "occurrence": occurrence_id,
        "retried": report.requeued,
        "not_retried": report.left_alone,
        "sent": result.sent if result else 0,
        "failed": result.failed if result else 0,
        "skipped": result.skipped if result else 0,
        "failures": result.reasons if result else {},
        "state": report.fired.state if report.fired else None,
    }
    if as_json:
        print_json(data)
    else:
        left = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report.left_alone.items()))
        if not report.total:
            out.print(
                f"{occurrence_id}: no failed deliveries to retry"
                + (f" (left alone: {left})" if left else "")
                + ".",
                markup=False,
            )
        else:
            assert result is not None
            out.print(
                f"{occurrence_id}: retried {report.total:,} failed deliveries — sent "
                f"{result.sent:,}, failed {result.failed:,}, skipped {result.skipped:,} "
                "(unsubscribed or suppressed meanwhile)"
                + (f"; left alone: {left}" if left else "")
                + ".",
                markup=False,
            )
            for reason, n in sorted(result.reasons.items(), key=lambda kv: -kv[1])[:10]:
                out.print(f"  {n:,} × {reason}", markup=False)
    if result is not None and result.failed:
        raise typer.Exit(1)


def retry_again(ctx: DeliveryContext, occurrence_id: str, channels: list[str]) -> FireReport:
    return fire(ctx, calendar.occurrence(ctx.config, occurrence_id), channels=channels)


def register(app: typer.Typer) -> None:
    app.command("retry")(retry_command)
