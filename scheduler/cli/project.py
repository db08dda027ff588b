"""`validate`, `calendar`, `plan`, `preview`: commands that read the project and send nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scheduler import calendar, waves
from scheduler.channels import sends_email
from scheduler.config.project import Project
from scheduler.console import err, fail, out, print_json, state, valid_project
from scheduler.errors import ConfigError, TemplateError, UnknownCampaignError
from scheduler.preview import build_preview
from scheduler.store.sizes import AudienceSizes, audience_sizes
from scheduler.timefmt import local_time, plural
from scheduler.validate import validate_project


def _parse_day(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; write YYYY-MM-DD", param_hint=option
        ) from None


def _occurrence_record(project: Project, occ: calendar.Occurrence) -> dict[str, Any]:
    campaign = project.config.campaigns[occ.campaign_id]
    return {
        "id": occ.id,
        "campaign": occ.campaign_id,
        "chapter": occ.chapter,
        "campaign_name": campaign.display_name(),
        "step": occ.step_id,
        "date": occ.anchor.isoformat(),
        "local": occ.local.isoformat(),
        "timezone": occ.timezone,
        "instant": occ.instant.isoformat().replace("+00:00", "Z"),
        "channels": list(occ.channels),
        "template": occ.template,
        "note": occ.note,
        # A campaign with a problem of its own is not sent until fixed (`scheduler validate`).
        "blocked": occ.campaign_id in project.blocked,
        "deliver": "local" if occ.deliver_local else "campaign",
    }


def _wave_records(
    project: Project, occ: calendar.Occurrence, sizes: AudienceSizes
) -> list[dict[str, object]]:
    """A `deliver: local` step's waves for its audience as it is now, earliest first."""
    campaign = project.config.campaigns[occ.campaign_id]
    return [w.as_json() for w in waves.waves(occ, sizes.by_zone(campaign.audience))]


# --- validate ------------------------------------------------------------------------------


def validate(
    strict: Annotated[
        bool,
        typer.Option(help="warnings (bad list rows) are errors; also fail on unset secrets"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print problems as JSON")] = False,
) -> None:
    """Check campaigns.yaml, statements, templates and lists; print every problem at once."""
    report = validate_project(state.config, strict=strict)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "blocked": sorted(report.blocked),
                "problems": [
                    {
                        "file": d.file,
                        "line": d.line,
                        "column": d.column,
                        "severity": d.severity,
                        "scope": d.scope,
                        "campaign": d.campaign,
                        "message": d.message,
                        "hint": d.hint,
                    }
                    for d in report.diagnostics
                ],
            }
        )
        raise typer.Exit(0 if report.ok else 1)
    # A template shared by two campaigns blocks both: say it once.
    for text in dict.fromkeys(d.format() for d in report.diagnostics):
        err.print(text, markup=False)
    warnings = len(report.warnings)
    if warnings:
        err.print(
            f"{warnings} warning{'s' if warnings != 1 else ''}: those list rows are left out; "
            "the other rows are imported and sent (--strict makes warnings errors).",
            markup=False,
        )
    if not report.ok:
        n = len(report.errors)
        blocked = report.blocked
        if report.project is not None and blocked:
            err.print(
                f"blocked until fixed: {', '.join(sorted(blocked))}; every other campaign "
                "is scheduled and sent.",
                markup=False,
            )
        err.print(
            f"{n} error{'s' if n != 1 else ''}; fix {'them' if n != 1 else 'it'} and run "
            "`scheduler validate` again.",
            markup=False,
        )
        raise typer.Exit(1)
    assert report.project is not None
    config = report.project.config
    steps = sum(len(c.steps) for c in config.campaigns.values())
    chapters = f", chapters {', '.join(config.chapters)}" if config.chapters else ""
    out.print(
        f"{report.project.display}: ok — {plural(len(config.campaigns), 'campaign')}, "
        f"{plural(steps, 'step')}, {plural(len(config.channels), 'channel')}, "
        f"{plural(len(config.lists), 'list')}, languages "
        f"{', '.join(config.all_languages)}{chapters}",
        markup=False,
    )


# --- calendar and plan ---------------------------------------------------------------------


def calendar_command(
    from_: Annotated[
        str | None, typer.Option("--from", help="first day, YYYY-MM-DD [default: today]")
    ] = None,
    to: Annotated[
        str | None, typer.Option(help="last day, YYYY-MM-DD [default: a year on]")
    ] = None,
    campaign: Annotated[
        list[str] | None, typer.Option(help="only this campaign (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
    ics: Annotated[Path | None, typer.Option(help="write an iCalendar (.ics) file")] = None,
) -> None:
    """List every occurrence between two days, in local time and UTC."""
    project = valid_project()
    start_day = _parse_day(from_, "--from") or dt.datetime.now(dt.UTC).date()
    end_day = _parse_day(to, "--to") or start_day + dt.timedelta(days=365)
    if end_day < start_day:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    start = dt.datetime.combine(start_day, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(end_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    try:
        occurrences = calendar.expand(project.config, start, end, campaigns=campaign or None)
    except UnknownCampaignError as e:
        raise typer.BadParameter(str(e), param_hint="--campaign") from None
    if ics is not None:
        # icalendar costs every command 50 ms to import; only `plan --ics` needs it.
        from scheduler.ics import to_ics

        ics.write_bytes(to_ics(project.config, occurrences))
        err.print(f"wrote {plural(len(occurrences), 'event')} to {ics}", markup=False)
    if as_json:
        records = [_occurrence_record(project, o) for o in occurrences]
        if any(o.deliver_local for o in occurrences):
            sizes = audience_sizes(project)
            for rec, occ in zip(records, occurrences, strict=True):
                if occ.deliver_local:
                    rec["waves"] = _wave_records(project, occ, sizes)
        print_json(records)
        return
    if ics is not None:
        return
    table = Table(title=f"Occurrences {start_day} — {end_day}", title_justify="left")
    table.add_column("Occurrence", no_wrap=True)
    table.add_column("Local time", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    table.add_column("Channels")
    for occ in occurrences:
        local = local_time(occ.local, weekday=True) + f" ({occ.timezone})"
        if occ.note:
            local += f"\n[yellow]{occ.note}[/]"
        if occ.campaign_id in project.blocked:
            local += "\n[red]blocked: not sent until fixed[/]"
        table.add_row(
            occ.id, local, occ.instant.strftime("%Y-%m-%d %H:%M"), ", ".join(occ.channels)
        )
    out.print(table)
    out.print(plural(len(occurrences), "occurrence"), markup=False)


def plan(
    days: Annotated[int, typer.Option(min=1, max=3660, help="how far ahead to look")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON records")] = False,
) -> None:
    """What goes where and when in the coming days, and to how many people."""
    project = valid_project()
    now = dt.datetime.now(dt.UTC)
    occurrences = calendar.next_occurrences(project.config, now, days=days)
    sizes = audience_sizes(project)
    records = []
    for occ in occurrences:
        rec = _occurrence_record(project, occ)
        campaign = project.config.campaigns[occ.campaign_id]
        emails = [c for c in occ.channels if sends_email(project.config.channels[c])]
        rec["audience"] = {
            "lists": list(campaign.audience),
            "recipients": sizes.recipients(campaign.audience) if emails else 0,
            "source": sizes.source,
        }
        if occ.deliver_local:
            rec["waves"] = _wave_records(project, occ, sizes)
        records.append(rec)
    if as_json:
        print_json(records)
        return
    if not records:
        out.print(
            f"Nothing is planned in the next {days} days. "
            "`scheduler calendar` shows the whole year.",
            markup=False,
        )
        return
    table = Table(title=f"Next {days} days", title_justify="left")
    for col in ("When", "In", "Occurrence"):
        table.add_column(col, no_wrap=True)
    table.add_column("Channels")
    table.add_column("Email recipients")
    for occ, rec in zip(occurrences, records, strict=True):
        delta = occ.instant - now
        when_in = (
            f"{delta.days}d {delta.seconds // 3600}h"
            if delta.days
            else f"{delta.seconds // 3600}h {delta.seconds % 3600 // 60}m"
        )
        audience = rec["audience"]
        recipients = (
            "—"
            if not any(sends_email(project.config.channels[c]) for c in occ.channels)
            else f"{audience['recipients']:,} ({', '.join(audience['lists'])})"
        )
        table.add_row(
            local_time(occ.local),
            when_in,
            occ.id + (" (blocked)" if occ.campaign_id in project.blocked else ""),
            ", ".join(occ.channels),
            recipients,
        )
    out.print(table)
    for rec in records:
        for w in rec.get("waves", []):
            out.print(
                f"{rec['id']}: wave {w['instant']} ({w['local']}, {', '.join(w['zones'])}) "
                f"to {w['size']:,}",
                markup=False,
                soft_wrap=True,
            )
    out.print(f"Audience counted from {sizes.source}.", markup=False)


# --- preview -------------------------------------------------------------------------------


def preview(
    campaign: Annotated[str, typer.Argument(help="campaign id from campaigns.yaml")],
    step: Annotated[str | None, typer.Option(help="only this step")] = None,
    channel: Annotated[str | None, typer.Option(help="only this channel")] = None,
    lang: Annotated[str | None, typer.Option(help="only this language")] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="write .html/.txt/.eml files here [default: ./preview, none with --json]"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print exactly what would be sent")
    ] = False,
) -> None:
    """Render what each channel would get for the campaign's next occurrence; send nothing."""
    project = valid_project(campaign)
    target = out_dir if (out_dir is not None or as_json) else Path("preview")
    try:
        items = build_preview(
            project, campaign, step=step, channel=channel, language=lang, out=target
        )
    except UnknownCampaignError as e:
        fail(str(e), 2)
    except (TemplateError, ConfigError) as e:
        fail(str(e))
    if as_json:
        print_json([i.as_json() for i in items])
        return
    for item in items:
        occ = item.occurrence
        header = (
            f"[bold]{occ.id}[/] → [cyan]{item.channel}[/] ({item.type}, {item.language}) at "
            f"{local_time(occ.local)}"
        )
        out.print(header)
        if item.is_email:
            out.print(f"  Subject: {item.email_headers.get('Subject', '')}", markup=False)
            for path in item.files:
                out.print(f"  wrote {path}", markup=False)
        else:
            total = len(item.parts)
            for n, part in enumerate(item.parts, 1):
                limit = f"/{item.limit}" if item.limit else ""
                ok = item.limit is None or part.length <= item.limit
                label = f"part {n}/{total}" if total > 1 else "post"
                colour = "green" if ok else "red"
                out.print(f"  [{colour}]{label}: {part.length}{limit}[/]")
                for line in part.text.splitlines():
                    out.print(f"    │ {line}", markup=False)
        out.print()
    over = [i for i in items if i.over_limit]
    if over:
        fail(f"{plural(len(over), 'post')} over the platform limit")
    out.print(f"{plural(len(items), 'message')} previewed; nothing was sent.", markup=False)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("calendar")(calendar_command)
    app.command("plan")(plan)
    app.command("preview")(preview)
