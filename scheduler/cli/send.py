"""`send`: fire one occurrence now, in this process or through the workers."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from scheduler import actions, calendar, settings
from scheduler.channels import get_channel_class
from scheduler.cli.control import cli_actor
from scheduler.config.diagnostics import did_you_mean
from scheduler.config.project import Project
from scheduler.console import err, fail, out, print_json, store, valid_project
from scheduler.delivery import channel_state, guard, ledger
from scheduler.delivery.batch import BatchReport
from scheduler.delivery.context import DeliveryContext, broker_url
from scheduler.delivery.emailing import EmailComposer
from scheduler.delivery.fire import FireReport, fire
from scheduler.delivery.ledger import Claim
from scheduler.delivery.readiness import unset_variables
from scheduler.delivery.retry import wait_for_held
from scheduler.errors import UnknownCampaignError
from scheduler.store import subscribers
from scheduler.store.sizes import audience_sizes
from scheduler.timefmt import local_time, plural

# --- send ----------------------------------------------------------------------------------


def pick_occurrence(
    project: Project,
    campaign_id: str,
    step: str | None,
    occurrence_id: str | None,
    now: dt.datetime,
    engine: Engine | None = None,
) -> calendar.Occurrence:
    config = project.config
    if occurrence_id:
        return calendar.occurrence(config, occurrence_id)
    campaign = calendar.find_campaign(config, campaign_id)
    if step is None:
        if len(campaign.steps) == 1:
            step = next(iter(campaign.steps))
        elif "statement" in campaign.steps:
            step = "statement"
        else:
            raise UnknownCampaignError(
                f"campaign {campaign_id!r} has several steps; choose one with --step "
                f"({', '.join(campaign.steps)})"
            )
    if step not in campaign.steps:
        raise UnknownCampaignError(
            f"campaign {campaign_id!r} has no step {step!r}; "
            + (did_you_mean(step, list(campaign.steps)) or f"steps: {', '.join(campaign.steps)}")
        )
    # One due in the last day that has not gone out (sent by hand after a failure or a
    # missed instant) comes first; then the step's next occurrence; for a campaign that
    # will not come again (a past one-off), its last one.
    recent = [
        o
        for o in calendar.expand(config, now - dt.timedelta(days=1), now, campaigns=[campaign_id])
        if o.step_id == step
    ]
    if recent and engine is not None:
        row = ledger.get_occurrence(engine, recent[-1].id)
        if row is None or row.state not in ("done", "cancelled"):
            return recent[-1]
    upcoming = [
        o
        for o in calendar.next_occurrences(config, now)
        if o.campaign_id == campaign_id and o.step_id == step
    ]
    if upcoming:
        return upcoming[0]
    past = calendar.expand(
        config, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), now, campaigns=[campaign_id]
    )
    matching = [o for o in past if o.step_id == step]
    if not matching:
        raise UnknownCampaignError(f"{campaign_id}/{step} has no occurrence")
    return matching[-1]


class _SendProgress:
    """A live bar: sent / failed / skipped and the sending rate, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.bar = Progress(
            TextColumn("[bold]sending"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=err,
            disable=not enabled,
        )
        self.task = self.bar.add_task("send", total=None, detail="")

    def __enter__(self) -> _SendProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def total(self, n: int) -> None:
        self.bar.update(self.task, total=max(n, 1))

    def update(self, report: BatchReport) -> None:
        done = report.sent + report.failed + report.skipped
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.bar.update(
            self.task,
            completed=done,
            detail=f"sent {report.sent:,} · failed {report.failed:,} · skipped "
            f"{report.skipped:,} · {report.sent / elapsed:,.0f}/s",
        )


def send_command(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    step: Annotated[
        str | None, typer.Option(help="the step [default: the only one, or 'statement']")
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="only these channels (repeatable)")
    ] = None,
    occurrence_id: Annotated[
        str | None,
        typer.Option("--occurrence", help="an exact occurrence id, e.g. may-day/2027/statement"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="render and count; send nothing")
    ] = False,
    enqueue: Annotated[
        bool,
        typer.Option(
            "--enqueue", help="hand the batches to Celery workers instead of sending here"
        ),
    ] = False,
    send_now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="send even when it is more than an hour before the instant, or past the "
            "catch-up window (otherwise asked on a terminal, refused elsewhere)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="do not wait for deliveries another (or a stopped) sender holds; say so, exit 1",
        ),
    ] = False,
) -> None:
    """Fire one occurrence now. Idempotent: run again, it sends nothing already sent.
    With --channel, the step's other channels stay planned: the clock sends them at the
    instant."""
    project = valid_project(campaign)
    now = dt.datetime.now(dt.UTC)
    engine = store()
    try:
        occ = pick_occurrence(project, campaign, step, occurrence_id, now, engine)
    except UnknownCampaignError as e:
        fail(str(e), 2)
    channels = list(channel or occ.channels)
    unknown = [c for c in channels if c not in occ.channels]
    if unknown:
        fail(
            f"{occ.id} does not go to {', '.join(unknown)}; its channels: "
            f"{', '.join(occ.channels)}",
            2,
        )
    if not dry_run:
        _require_secrets(project, channels)
        check = actions.check_send(project, engine, occ, channels, now)
        if check.review:
            fail(
                f"{occ.id} needs review before it is sent: {check.review}; "
                f"see `scheduler review {occ.id}`"
            )
        note = _confirm_timing(check, send_now)
    ctx = DeliveryContext(project, engine, redis_url=broker_url() if enqueue else None)
    try:
        if dry_run:
            _dry_run(ctx, occ, channels, as_json)
            return
        if not as_json:
            err.print(
                f"firing {occ.id} ({local_time(occ.local)}) on {', '.join(channels)}",
                markup=False,
            )
        if enqueue:
            from scheduler.tasks import enqueue_batch

            report = actions.send_now(
                ctx, occ, cli_actor(), channels=channels, dispatch=enqueue_batch, note=note
            )
        else:
            with _SendProgress(not as_json) as bar:
                report = actions.send_now(
                    ctx,
                    occ,
                    cli_actor(),
                    channels=channels,
                    progress=bar.update,
                    on_total=bar.total,
                    note=note,
                    processes=settings.sender_processes(),
                )
                if not no_wait:
                    # What a stopped sender left is sent in this run, once its lease ends.
                    report = wait_for_held(
                        report,
                        lambda: fire(ctx, occ, channels=channels, progress=bar.update),
                        on_wait=_say_waiting(report.occurrence_id),
                    )
    finally:
        ctx.close()
    _summary(project, occ, report, as_json, enqueue)


def _say_waiting(occurrence_id: str) -> Callable[[int, dt.datetime | None], None]:
    def say(held: int, until: dt.datetime | None) -> None:
        when = f"{until:%H:%M:%S} UTC" if until else "soon"
        err.print(
            f"{occurrence_id}: {held:,} deliveries are held by another sender, or were left "
            f"by one that stopped; waiting until {when} for their lease to end, then sending "
            "them (Ctrl-C leaves them for a later run).",
            markup=False,
        )

    return say


def _require_secrets(project: Project, channels: list[str]) -> None:
    """Refuse before anything is sent when a channel's `${VAR}` is unset: otherwise the
    email would go out and the posts fail, half a campaign."""
    missing = {c: unset_variables(project.config, c) for c in channels}
    missing = {c: v for c, v in missing.items() if v}
    if missing:
        needs = "; ".join(f"{c} needs {', '.join(v)}" for c, v in missing.items())
        ready = [c for c in channels if c not in missing]
        hint = (
            f" or send only to the ready ones: --channel {' --channel '.join(ready)}"
            if ready
            else ""
        )
        fail(f"nothing was sent: {needs}. Export the variables{hint}.")


def _confirm_timing(check: actions.SendCheck, send_now: bool) -> str | None:
    """Ask before starting an occurrence far from its instant (see delivery.guard); returns
    the note to record on the channels this send starts."""
    problem = check.timing
    if problem is None:
        return check.note
    if send_now:
        err.print(f"{problem.message}; sending now as asked (--now).", markup=False)
        return check.confirmed_note()
    if sys.stdin.isatty() and typer.confirm(f"{problem.message}. Send it now?", err=True):
        return check.confirmed_note()
    fail(f"{problem.message}; nothing was sent. To send it anyway, pass --now.")


def _dry_run(
    ctx: DeliveryContext, occ: calendar.Occurrence, channels: list[str], as_json: bool
) -> None:
    campaign = ctx.config.campaigns[occ.campaign_id]
    audience = list(subscribers.active_audience(ctx.engine, campaign.audience))
    # Counted as `plan` counts: the store plus the CSV sources a send syncs first.
    expected = max(audience_sizes(ctx.project).recipients(campaign.audience), len(audience))
    by_language: dict[str, int] = {}
    for r in audience:
        lang = ctx.renderer.email_language(campaign, r.language)
        by_language[lang] = by_language.get(lang, 0) + 1
    rendered: dict[str, Any] = {}
    for c in channels:
        kind = get_channel_class(ctx.config.channels[c].type).kind
        if kind == "email":
            composer = EmailComposer(ctx.renderer, occ, c)
            sizes = {}
            for r in {
                ctx.renderer.email_language(campaign, r.language): r for r in audience
            }.values():
                data = composer.compose(
                    subscriber_id=r.subscriber_id,
                    email_address=r.email,
                    name=r.name,
                    language=r.language,
                )
                sizes[ctx.renderer.email_language(campaign, r.language)] = len(data)
            rendered[c] = {
                "type": ctx.config.channels[c].type,
                "kind": "email",
                "recipients": expected,
                "in_store": len(audience),
                "from_sources": expected - len(audience),
                "by_language": by_language,
                "message_bytes": sizes,
            }
        else:
            post = ctx.renderer.post(occ, c)
            rendered[c] = {
                "type": ctx.config.channels[c].type,
                "posts": 1,
                "language": post.language,
                "characters": len(post.text),
            }
    sources = {
        name: ctx.config.lists[name].source
        for name in campaign.audience
        if name in ctx.config.lists and ctx.config.lists[name].source
    }
    if as_json:
        print_json(
            {
                "occurrence": occ.id,
                "dry_run": True,
                "channels": rendered,
                "synced_before_sending": sources,
            }
        )
        return
    out.print(f"dry run of {occ.id} at {local_time(occ.local)} — nothing was sent", markup=False)
    for c, info in rendered.items():
        if info.get("kind") == "email":
            langs = [f"{k}: {v:,}" for k, v in sorted(info["by_language"].items())]
            if info["from_sources"]:
                langs.append(f"{info['from_sources']:,} more from the lists' CSV sources")
            out.print(
                f"  {c}: {plural(info['recipients'], 'email')} ({', '.join(langs) or 'nobody'})",
                markup=False,
            )
        else:
            out.print(f"  {c}: 1 post in {info['language']}", markup=False)
    for name, source in sources.items():
        out.print(f"  (list {name} is synced from {source} before sending)", markup=False)


def _summary(
    project: Project,
    occ: calendar.Occurrence,
    report: FireReport,
    as_json: bool,
    enqueued: bool,
) -> None:
    r = report.result
    now = dt.datetime.now(dt.UTC)
    planned = report.still_planned
    when = guard.planned_channels_note(project.config, occ, planned, now) if planned else None
    data = {
        "occurrence": report.occurrence_id,
        "claim": report.claim.value,
        "state": report.state,
        "deliveries": report.total,
        "new_deliveries": report.new_rows,
        "batches": report.batches,
        "enqueued": enqueued,
        "sent": r.sent,
        "failed": r.failed,
        "skipped": r.skipped,
        "retried": r.retried,
        "already_done": report.already_final,
        "failures": r.reasons,
        "held_by_others": report.held,
        "deferred": {
            channel: {"count": d.count, "next_attempt_at": d.next_attempt_at, "reason": d.reason}
            for channel, d in report.deferred.items()
        },
        "channels": {p.channel: p.as_json() for p in report.progress},
        "still_planned": planned,
        "still_planned_at": occ.instant if planned else None,
        "still_planned_note": when,
    }
    if as_json:
        print_json(data)
    elif report.claim is Claim.REFUSED:
        out.print(f"{report.occurrence_id} is {report.state}: nothing was sent.", markup=False)
    elif enqueued:
        out.print(
            f"{report.occurrence_id}: {plural(report.batches, 'batch', 'batches')} handed to "
            f"the workers ({plural(report.total, 'delivery', 'deliveries')}). "
            "`scheduler status` shows progress.",
            markup=False,
        )
    elif r.sent == r.failed == r.skipped == 0 and report.held:
        until = f"{local_time(report.held_until, seconds=True)}" if report.held_until else "soon"
        out.print(
            f"{report.occurrence_id}: {plural(report.held, 'delivery is', 'deliveries are')} "
            f"held by another sender, or were left by one that stopped; they can be sent again "
            f"from {until} (run this command again then, without --no-wait).",
            markup=False,
        )
    elif r.sent == r.failed == r.skipped == r.deferred == 0 and report.deferred:
        waiting = sum(d.count for d in report.deferred.values())
        out.print(
            f"{report.occurrence_id}: nothing to send yet — "
            f"{plural(waiting, 'delivery waits', 'deliveries wait')} for its next attempt "
            "after a temporary failure.",
            markup=False,
        )
    elif r.sent == r.failed == r.skipped == 0:
        done = plural(report.already_final, "delivery was", "deliveries were")
        out.print(
            f"{report.occurrence_id}: nothing new to send — {done} already done.",
            markup=False,
        )
    else:
        out.print(
            f"{report.occurrence_id}: sent {r.sent:,}, failed {r.failed:,}, skipped "
            f"{r.skipped:,} (left the list meanwhile), retried {r.retried:,}.",
            markup=False,
        )
        for reason, n in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:10]:
            out.print(f"  {n:,} × {reason}", markup=False)
        if report.held:
            out.print(
                f"  {report.held:,} deliveries are still held by another sender (or one "
                "that stopped); run this command again to send them once it lets go.",
                markup=False,
            )
    if not as_json and report.claim is not Claim.REFUSED:
        for line in channel_lines(report.progress):
            out.print(f"  {line}", markup=False)
        for channel, d in report.deferred.items():
            when = local_time(d.next_attempt_at, seconds=True) if d.next_attempt_at else "soon"
            out.print(
                f"  {channel}: {plural(d.count, 'delivery', 'deliveries')} deferred after a "
                f"temporary failure ({d.reason}); next attempt {when}. The running clock "
                "(`scheduler run` or `scheduler clock`) sends them then, or run this command "
                "again after that; they fail only once the channel's retry window is over.",
                markup=False,
            )
        if planned and when:
            campaign_id = report.occurrence_id.split("/")[0]
            flags = " ".join(f"--channel {c}" for c in planned)
            out.print(
                f"Still planned: {when}. To send now: scheduler send {campaign_id} "
                f"--occurrence {report.occurrence_id} {flags}",
                markup=False,
            )
    if report.claim is Claim.REFUSED or r.failed or report.held:
        raise typer.Exit(1)


def channel_lines(progress: list[channel_state.ChannelProgress]) -> list[str]:
    """One line per channel: `email: done — sent 5, failed 0`, `mastodon: still planned`."""
    lines = []
    for p in progress:
        if p.still_planned:
            lines.append(f"{p.channel}: still planned")
            continue
        counts = f"sent {p.sent:,}, failed {p.failed:,}"
        if p.skipped:
            counts += f", skipped {p.skipped:,}"
        if p.pending:
            counts += f", pending {p.pending:,}"
        late = " (late)" if p.late else ""
        lines.append(f"{p.channel}: {p.state}{late} — {counts}")
    return lines


def register(app: typer.Typer) -> None:
    app.command("send")(send_command)
