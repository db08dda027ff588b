"""`status`: occurrences, delivery counts and failures from the store."""

from __future__ import annotations

import datetime as dt
import textwrap
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import Engine

from scheduler.config.diagnostics import did_you_mean
from scheduler.config.project import load_project
from scheduler.console import fail, out, print_json, safe_url, state, store
from scheduler.delivery import channel_state, ledger
from scheduler.errors import ConfigError
from scheduler.listhealth import stats
from scheduler.store import problems
from scheduler.timefmt import local_time

# --- status --------------------------------------------------------------------------------


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="how many occurrences")] = 20,
    chapter: Annotated[
        str | None, typer.Option("--chapter", help="only this chapter's occurrences")
    ] = None,
) -> None:
    """Occurrences with their delivery counts per channel, and why deliveries failed."""
    if chapter is not None:
        known_chapter(chapter)
    engine = store()
    rows = ledger.list_occurrences(engine, limit=limit, chapter=chapter)
    all_counts = ledger.counts(engine)
    progress = channel_state.progress(engine, [r.id for r in rows])
    deferred = ledger.deferred(engine, [r.id for r in rows])
    health = stats.by_occurrence(engine, [row.id for row in rows])
    list_health = stats.by_list(engine)
    found = problem_records(engine)
    blocked = problems.blocked_reasons(problems.current(engine, problems.CAMPAIGN))
    by_wave = ledger.wave_counts(engine, [r.id for r in rows])
    records: list[dict[str, Any]] = []
    for row in rows:
        shown, blocked_reason = problems.shown_state(row.state, row.campaign, row.note, blocked)
        records.append(
            {
                "id": row.id,
                # `blocked`: its campaign has a problem of its own (stored as `planned`,
                # fired late if fixed inside its catch-up window); `blocked_reason` says why.
                "state": shown,
                "blocked_reason": blocked_reason,
                "instant": row.instant.isoformat(),
                "late": row.late,
                "note": row.note,
                "fired_at": row.fired_at,
                "finished_at": row.finished_at,
                "deliveries": all_counts.get(row.id, {}),
                # Per channel: its own state (planned, firing, done, missed, cancelled) and
                # what it sent, failed, skipped and has pending.
                "channels": {p.channel: p.as_json() for p in progress.get(row.id, [])},
                "still_planned": [p.channel for p in progress.get(row.id, []) if p.still_planned],
                # Pending after a temporary failure of their own, until their next attempt.
                "deferred": {
                    channel: {
                        "count": d.count,
                        "next_attempt_at": d.next_attempt_at,
                        "reason": d.reason,
                    }
                    for channel, d in deferred.get(row.id, {}).items()
                },
                "failures": [
                    {"channel": c, "reason": e, "count": n}
                    for c, e, n in ledger.failures(engine, row.id, limit=5)
                ],
                "list_health": health[row.id].as_dict(),
                # A `deliver: local` step: each wave (zone by zone) with what it sent.
                "waves": [w.as_json() for w in by_wave.get(row.id, [])],
            }
        )
    from scheduler.delivery import clock_state
    from scheduler.review import holds

    paused = sorted(
        c for c in clock_state.paused(engine) if chapter is None or c.startswith(f"{chapter}/")
    )
    held = [h.occurrence_id for h in holds.open_holds(engine)]
    seen = clock_state.last_seen(engine)
    if as_json:
        print_json(
            {
                "database": safe_url(),
                "chapter": chapter,
                "paused": paused,
                "held": held,
                "clock_last_seen": seen,
                **found,
                "occurrences": records,
                "lists": {
                    name: [{"week": week.isoformat(), **h.as_dict()} for week, h in weeks.items()]
                    for name, weeks in list_health.items()
                },
            }
        )
        return
    if paused:
        out.print(f"paused campaigns: {', '.join(paused)}", markup=False)
    print_problems(found)
    for occurrence_id in held:
        out.print(
            f"HELD for review, not sent: {occurrence_id} (scheduler review {occurrence_id})",
            markup=False,
        )
    if seen:
        out.print(f"clock last seen {local_time(seen, seconds=True)}", markup=False)
    if not records:
        out.print(
            "No occurrence has fired yet. `scheduler plan` shows what is coming.", markup=False
        )
        return
    table = Table(title="Occurrences", title_justify="left")
    for col in ("Occurrence", "State", "Instant"):
        table.add_column(col, no_wrap=True)
    table.add_column("Channels: sent / failed / still planned")
    table.add_column("Bounced (hard+soft) / complained / unsubscribed")
    for row, rec in zip(rows, records, strict=True):
        waiting = deferred.get(row.id, {})
        parts = [_channel_text(p, waiting.get(p.channel)) for p in progress.get(row.id, [])]
        parts += [w.text() for w in by_wave.get(row.id, [])]
        state_text = rec["state"] + (" (late)" if rec["late"] else "")
        if rec["blocked_reason"]:
            # In short: the line above the table gives the file, line and every problem.
            why = rec["blocked_reason"].split(": ", 1)[-1] if row.campaign in blocked else ""
            state_text += f"\n{textwrap.shorten(why or rec['blocked_reason'], 60)}"
        elif rec["note"] and rec["state"] in ("missed", "cancelled", "planned"):
            state_text += f"\n{rec['note']}"
        h = rec["list_health"]
        table.add_row(
            rec["id"],
            state_text,
            local_time(row.instant),
            "\n".join(parts) or "—",
            f"{h['hard_bounces']}+{h['soft_bounces']} / {h['complaints']} / {h['unsubscribes']}",
        )
    out.print(table)
    _print_list_health(list_health)
    for rec in records:
        for f in rec["failures"]:
            out.print(f"{rec['id']} {f['channel']}: {f['count']:,} × {f['reason']}", markup=False)
        for channel, d in rec["deferred"].items():
            when = (
                local_time(d["next_attempt_at"], seconds=True) if d["next_attempt_at"] else "soon"
            )
            out.print(
                f"{rec['id']} {channel}: {d['count']:,} deferred after a temporary failure "
                f"({d['reason']}); next attempt {when}, until the channel's retry window ends",
                markup=False,
                soft_wrap=True,
            )


def known_chapter(chapter: str) -> None:
    """A misspelt --chapter would show an empty, reassuring status: refuse it instead."""
    try:
        chapters = list(load_project(state.config).config.chapters)
    except ConfigError:
        return  # the store alone can still answer; `validate` tells what is wrong
    if chapter not in chapters:
        fail(
            f"unknown chapter {chapter!r}; "
            + (did_you_mean(chapter, chapters) or f"chapters: {', '.join(chapters) or 'none'}"),
            2,
        )


def _channel_text(
    p: channel_state.ChannelProgress, deferred: ledger.DeferredSummary | None = None
) -> str:
    if p.still_planned:
        return f"{p.channel}: still planned"
    counts = f"sent {p.sent:,}, failed {p.failed:,}"
    if p.skipped:
        counts += f", skipped {p.skipped:,}"
    pending = p.pending - (deferred.count if deferred else 0)
    if pending:
        counts += f", pending {pending:,}"
    if deferred:
        counts += f", deferred {deferred.count:,}"
        if deferred.next_attempt_at is not None:
            counts += f" (next try {local_time(deferred.next_attempt_at, seconds=True)})"
    text = f"{p.channel}: {p.state}{' (late)' if p.late else ''} — {counts}"
    if p.state in ("missed", "cancelled") and p.note:
        text += f" ({p.note})"
    return text


def _print_list_health(by_list: dict[str, dict[dt.date, stats.Health]]) -> None:
    if not by_list:
        return
    table = Table(title="Left the lists, by week", title_justify="left")
    for col in ("List", "Week of", "Bounced", "Complained", "Unsubscribed"):
        table.add_column(col, no_wrap=True)
    for name, weeks in by_list.items():
        for week, h in weeks.items():
            table.add_row(
                name, week.isoformat(), str(h.bounces), str(h.complaints), str(h.unsubscribes)
            )
    out.print(table)


def problem_records(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Blocked campaigns (as the clock last loaded the file) and list rows left out at the
    last sync, from the store."""
    rows = problems.current(engine)
    return {
        "blocked": [
            {"campaign": r.subject, "since": r.since, "count": r.count, "problems": r.detail}
            for r in rows
            if r.kind == problems.CAMPAIGN
        ],
        "list_problems": [
            {
                "list": r.subject,
                "file": r.file,
                "count": r.count,
                "lines": r.lines,
                "synced_at": r.updated_at,
                "problems": r.detail,
            }
            for r in rows
            if r.kind == problems.LIST
        ],
    }


def print_problems(found: dict[str, list[dict[str, Any]]]) -> None:
    for b in found["blocked"]:
        first = b["problems"][0] if b["problems"] else {}
        where = f"{first.get('file')}:{first.get('line')}: " if first.get("line") else ""
        out.print(
            f"blocked campaign {b['campaign']} (since {b['since']:%Y-%m-%d %H:%M} UTC): "
            f"{where}{first.get('message', '')}"
            + (f" (and {b['count'] - 1} more)" if b["count"] > 1 else "")
            + " — not sent until fixed; `scheduler validate` shows every problem",
            markup=False,
            soft_wrap=True,
        )
    for p in found["list_problems"]:
        lines = ", ".join(str(n) for n in p["lines"][:5]) + (", ..." if p["count"] > 5 else "")
        out.print(
            f"list {p['list']}: {p['count']:,} row{'s' if p['count'] != 1 else ''} of "
            f"{p['file']} left out at the last sync ({p['synced_at']:%Y-%m-%d %H:%M} UTC), "
            f"line{'s' if p['count'] != 1 else ''} {lines}; `scheduler validate` says why",
            markup=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
