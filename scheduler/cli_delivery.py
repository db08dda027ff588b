"""Commands that touch the store and send: `send`, `status`, `lists`, `worker`."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.audience.csvfile import read_csv
from scheduler.channels import get_channel_class
from scheduler.config.diagnostics import did_you_mean
from scheduler.config.project import Project
from scheduler.console import err, fail, out, print_json, state, valid_project
from scheduler.delivery import ledger
from scheduler.delivery.batch import BatchReport
from scheduler.delivery.context import DeliveryContext, broker_url
from scheduler.delivery.emailing import EmailComposer
from scheduler.delivery.fire import FireReport, fire
from scheduler.delivery.ledger import Claim
from scheduler.errors import UnknownCampaignError
from scheduler.store import subscribers
from scheduler.store.db import database_url, make_engine, migrate

lists_app = typer.Typer(
    help="Subscribers: import CSV files, count by status.", no_args_is_help=True
)


def store() -> Engine:
    engine = make_engine()
    migrate(engine)
    return engine


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
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Fire one occurrence now. Idempotent: run again, it sends nothing already sent."""
    project = valid_project()
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
    ctx = DeliveryContext(project, engine, redis_url=broker_url() if enqueue else None)
    try:
        if dry_run:
            _dry_run(ctx, occ, channels, as_json)
            return
        if not as_json:
            err.print(
                f"firing {occ.id} ({occ.local:%Y-%m-%d %H:%M %Z}) on {', '.join(channels)}",
                markup=False,
            )
        if enqueue:
            from scheduler.tasks import enqueue_batch

            report = fire(
                ctx,
                occ,
                channels=channels,
                dispatch=enqueue_batch,
                revive_missed=True,
                note=_manual_note(engine, occ),
            )
        else:
            with _SendProgress(not as_json) as bar:
                report = fire(
                    ctx,
                    occ,
                    channels=channels,
                    progress=bar.update,
                    on_total=bar.total,
                    revive_missed=True,
                    note=_manual_note(engine, occ),
                )
    finally:
        ctx.close()
    _summary(report, as_json, enqueue)


def _require_secrets(project: Project, channels: list[str]) -> None:
    """Refuse before anything is sent when a channel's `${VAR}` is unset: otherwise the
    email would go out and the posts fail, half a campaign."""
    from scheduler.config import secrets

    missing: dict[str, list[str]] = {}
    for name in channels:
        for value in (project.config.channels[name].model_extra or {}).values():
            if isinstance(value, str):
                for var in secrets.missing(value):
                    missing.setdefault(name, []).append(var)
    if missing:
        needs = "; ".join(f"{c} needs {', '.join(v)}" for c, v in missing.items())
        ready = [c for c in channels if c not in missing]
        hint = (
            f" or send only to the ready ones: --channel {' --channel '.join(ready)}"
            if ready
            else ""
        )
        fail(f"nothing was sent: {needs}. Export the variables{hint}.")


def _manual_note(engine: Engine, occ: calendar.Occurrence) -> str | None:
    row = ledger.get_occurrence(engine, occ.id)
    if row is not None and row.state == "missed":
        return f"sent by hand after being missed ({row.note})"
    return None


def _dry_run(
    ctx: DeliveryContext, occ: calendar.Occurrence, channels: list[str], as_json: bool
) -> None:
    campaign = ctx.config.campaigns[occ.campaign_id]
    audience = list(subscribers.active_audience(ctx.engine, campaign.audience))
    by_language: dict[str, int] = {}
    for r in audience:
        lang = ctx.renderer.email_language(campaign, r.language)
        by_language[lang] = by_language.get(lang, 0) + 1
    rendered: dict[str, Any] = {}
    for c in channels:
        kind = get_channel_class(ctx.config.channels[c].type).kind
        if kind == "email":
            composer = EmailComposer(ctx.renderer, occ, c, date=occ.instant)
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
                "type": "smtp",
                "recipients": len(audience),
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
    out.print(
        f"dry run of {occ.id} at {occ.local:%Y-%m-%d %H:%M %Z} — nothing was sent", markup=False
    )
    for c, info in rendered.items():
        if info["type"] == "smtp":
            langs = ", ".join(f"{k}: {v:,}" for k, v in sorted(info["by_language"].items()))
            out.print(f"  {c}: {info['recipients']:,} emails ({langs or 'nobody'})", markup=False)
        else:
            out.print(f"  {c}: 1 post in {info['language']}", markup=False)
    for name, source in sources.items():
        out.print(
            f"  (list {name} is synced from {source} before sending; counts above are "
            "the store's now)",
            markup=False,
        )


def _summary(report: FireReport, as_json: bool, enqueued: bool) -> None:
    r = report.result
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
    }
    if as_json:
        print_json(data)
    elif report.claim is Claim.REFUSED:
        out.print(f"{report.occurrence_id} is {report.state}: nothing was sent.", markup=False)
    elif enqueued:
        out.print(
            f"{report.occurrence_id}: {report.batches} batches handed to the workers "
            f"({report.total:,} deliveries). `scheduler status` shows progress.",
            markup=False,
        )
    elif r.sent == r.failed == r.skipped == 0 and report.held:
        until = f"{report.held_until:%H:%M:%S} UTC" if report.held_until else "soon"
        out.print(
            f"{report.occurrence_id}: {report.held:,} deliveries are held by another "
            f"sender, or were left by one that stopped; they can be sent again from "
            f"{until} (run this command again then).",
            markup=False,
        )
    elif r.sent == r.failed == r.skipped == 0:
        out.print(
            f"{report.occurrence_id}: nothing new to send — {report.already_final:,} "
            f"deliveries were already done (state: {report.state}).",
            markup=False,
        )
    else:
        out.print(
            f"{report.occurrence_id}: sent {r.sent:,}, failed {r.failed:,}, skipped "
            f"{r.skipped:,} (left the list meanwhile), retried {r.retried:,}; state "
            f"{report.state}.",
            markup=False,
        )
        for reason, n in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:10]:
            out.print(f"  {n:,} × {reason}", markup=False)
    if report.claim is Claim.REFUSED or r.failed:
        raise typer.Exit(1)


# --- status --------------------------------------------------------------------------------


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="how many occurrences")] = 20,
) -> None:
    """Occurrences with their delivery counts per channel, and why deliveries failed."""
    engine = store()
    rows = ledger.list_occurrences(engine, limit=limit)
    all_counts = ledger.counts(engine)
    records: list[dict[str, Any]] = []
    for row in rows:
        records.append(
            {
                "id": row.id,
                "state": row.state,
                "instant": row.instant.isoformat(),
                "late": row.late,
                "note": row.note,
                "fired_at": row.fired_at,
                "finished_at": row.finished_at,
                "deliveries": all_counts.get(row.id, {}),
                "failures": [
                    {"channel": c, "reason": e, "count": n}
                    for c, e, n in ledger.failures(engine, row.id, limit=5)
                ],
            }
        )
    from scheduler.clock import state as clock_state

    paused = sorted(clock_state.paused(engine))
    seen = clock_state.last_seen(engine)
    if as_json:
        print_json(
            {
                "database": _safe_url(),
                "paused": paused,
                "clock_last_seen": seen,
                "occurrences": records,
            }
        )
        return
    if paused:
        out.print(f"paused campaigns: {', '.join(paused)}", markup=False)
    if seen:
        out.print(f"clock last seen {seen:%Y-%m-%d %H:%M:%S} UTC", markup=False)
    if not records:
        out.print(
            "No occurrence has fired yet. `scheduler plan` shows what is coming.", markup=False
        )
        return
    table = Table(title="Occurrences", title_justify="left")
    for col in ("Occurrence", "State", "Instant (UTC)"):
        table.add_column(col, no_wrap=True)
    table.add_column("Deliveries")
    for rec in records:
        parts = []
        for ch, by_state in sorted(rec["deliveries"].items()):
            shown = " ".join(f"{s} {n:,}" for s, n in sorted(by_state.items()))
            parts.append(f"{ch}: {shown}")
        state_text = rec["state"] + (" (late)" if rec["late"] else "")
        if rec["note"] and rec["state"] in ("missed", "cancelled"):
            state_text += f"\n{rec['note']}"
        table.add_row(
            rec["id"], state_text, rec["instant"][:16].replace("T", " "), "\n".join(parts) or "—"
        )
    out.print(table)
    for rec in records:
        for f in rec["failures"]:
            out.print(f"{rec['id']} {f['channel']}: {f['count']:,} × {f['reason']}", markup=False)


def _safe_url() -> str:
    url = database_url()
    return url.split("@")[-1] if "@" in url else url


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


# --- worker --------------------------------------------------------------------------------


def worker_command(
    concurrency: Annotated[int, typer.Option(min=1, help="worker processes")] = 2,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """A Celery worker that sends batches (distributed mode; broker SCHEDULER_BROKER_URL)."""
    import os

    valid_project()  # refuse to start on a broken campaigns.yaml
    if state.config:
        os.environ["SCHEDULER_CONFIG"] = str(Path(state.config).resolve())
    from scheduler.tasks import QUEUE, app

    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--queues={QUEUE}",
            "--without-gossip",
            "--without-mingle",
            "--pool=prefork",
        ]
    )


# --- the clock ------------------------------------------------------------------------------


def _logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # APScheduler logs every run of the sweep at INFO; our own lines say what matters.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _print_next(project: Project) -> None:
    from scheduler.clock.daemon import describe_next

    upcoming = describe_next(project, dt.datetime.now(dt.UTC), limit=8)
    err.print(f"next occurrences ({len(upcoming)} shown):", markup=False)
    for o in upcoming:
        err.print(f"  {o['local']:<24} {o['id']}  → {', '.join(o['channels'])}", markup=False)


def run_command(
    tick: Annotated[float, typer.Option(min=0.5, help="seconds between reconciliations")] = 5.0,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Embedded daemon: fires every occurrence at its instant and sends it in this process."""
    from scheduler.clock.daemon import Clock

    project = valid_project()
    _logging(loglevel)
    engine = store()
    _print_next(project)
    Clock(project, engine, tick_seconds=tick).run_forever()


def clock_command(
    tick: Annotated[float, typer.Option(min=0.5, help="seconds between reconciliations")] = 5.0,
    leader_ttl: Annotated[
        float, typer.Option(min=1, help="seconds a dead leader keeps the lead")
    ] = 15.0,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Distributed scheduler: fires occurrences by handing them to `scheduler worker`s.
    Run two for safety: one leads (a Redis lock), the other takes over if it dies."""
    import redis

    from scheduler.clock.daemon import Clock
    from scheduler.clock.leader import LeaderLock

    project = valid_project()
    _logging(loglevel)
    engine = store()
    url = broker_url()
    import os

    from scheduler.clock.leader import KEY

    leader = LeaderLock(
        redis.Redis.from_url(url),
        ttl_seconds=leader_ttl,
        key=os.environ.get("SCHEDULER_LEADER_KEY", KEY),
    )
    _print_next(project)
    Clock(
        project,
        engine,
        distributed=True,
        leader=leader,
        redis_url=url,
        tick_seconds=min(tick, leader_ttl / 3),
    ).run_forever()


def pause_command(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    note: Annotated[str | None, typer.Option(help="why, shown by status")] = None,
) -> None:
    """Stop firing a campaign's occurrences until `resume` (late ones fire inside the
    catch-up window when resumed; older ones are recorded as missed)."""
    from scheduler.clock import state as clock_state

    project = valid_project()
    _known_campaign(project, campaign)
    changed = clock_state.pause(store(), campaign, note)
    out.print(f"{campaign}: {'paused' if changed else 'already paused'}", markup=False)


def resume_command(campaign: Annotated[str, typer.Argument(help="campaign id")]) -> None:
    """Fire a paused campaign's occurrences again."""
    from scheduler.clock import state as clock_state

    project = valid_project()
    _known_campaign(project, campaign)
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


def migrate_command() -> None:
    """Create or upgrade the store's tables (safe to run again)."""
    store()
    out.print(f"database {_safe_url()} is up to date", markup=False)


def _known_campaign(project: Project, campaign: str) -> None:
    if campaign not in project.config.campaigns:
        fail(
            f"unknown campaign {campaign!r}; "
            + (
                did_you_mean(campaign, list(project.config.campaigns))
                or f"campaigns: {', '.join(project.config.campaigns)}"
            ),
            2,
        )


def register(app: typer.Typer) -> None:
    app.command("send")(send_command)
    app.command("status")(status_command)
    app.command("run")(run_command)
    app.command("clock")(clock_command)
    app.command("worker")(worker_command)
    app.command("pause")(pause_command)
    app.command("resume")(resume_command)
    app.command("cancel")(cancel_command)
    app.command("migrate")(migrate_command)
    app.add_typer(lists_app, name="lists")
