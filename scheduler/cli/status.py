"""`status`: occurrences, delivery counts and failures from the store."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from scheduler.console import out, print_json, safe_url, store
from scheduler.delivery import channel_state, ledger
from scheduler.timefmt import local_time

# --- status --------------------------------------------------------------------------------


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="how many occurrences")] = 20,
) -> None:
    """Occurrences with their delivery counts per channel, and why deliveries failed."""
    engine = store()
    rows = ledger.list_occurrences(engine, limit=limit)
    all_counts = ledger.counts(engine)
    progress = channel_state.progress(engine, [r.id for r in rows])
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
                # Per channel: its own state (planned, firing, done, missed, cancelled) and
                # what it sent, failed, skipped and has pending.
                "channels": {p.channel: p.as_json() for p in progress.get(row.id, [])},
                "still_planned": [p.channel for p in progress.get(row.id, []) if p.still_planned],
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
                "database": safe_url(),
                "paused": paused,
                "clock_last_seen": seen,
                "occurrences": records,
            }
        )
        return
    if paused:
        out.print(f"paused campaigns: {', '.join(paused)}", markup=False)
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
    for row, rec in zip(rows, records, strict=True):
        parts = [_channel_text(p) for p in progress.get(row.id, [])]
        state_text = rec["state"] + (" (late)" if rec["late"] else "")
        if rec["note"] and rec["state"] in ("missed", "cancelled"):
            state_text += f"\n{rec['note']}"
        table.add_row(rec["id"], state_text, local_time(row.instant), "\n".join(parts) or "—")
    out.print(table)
    for rec in records:
        for f in rec["failures"]:
            out.print(f"{rec['id']} {f['channel']}: {f['count']:,} × {f['reason']}", markup=False)


def _channel_text(p: channel_state.ChannelProgress) -> str:
    if p.still_planned:
        return f"{p.channel}: still planned"
    counts = f"sent {p.sent:,}, failed {p.failed:,}"
    if p.skipped:
        counts += f", skipped {p.skipped:,}"
    if p.pending:
        counts += f", pending {p.pending:,}"
    text = f"{p.channel}: {p.state}{' (late)' if p.late else ''} — {counts}"
    if p.state in ("missed", "cancelled") and p.note:
        text += f" ({p.note})"
    return text


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
