"""`status`: occurrences, delivery counts and failures from the store."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from rich.table import Table

from scheduler.console import out, print_json, safe_url, store
from scheduler.delivery import ledger
from scheduler.listhealth import stats

# --- status --------------------------------------------------------------------------------


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="how many occurrences")] = 20,
) -> None:
    """Occurrences with their delivery counts per channel, and why deliveries failed."""
    engine = store()
    rows = ledger.list_occurrences(engine, limit=limit)
    all_counts = ledger.counts(engine)
    health = stats.by_occurrence(engine, [row.id for row in rows])
    list_health = stats.by_list(engine)
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
                "list_health": health[row.id].as_dict(),
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
                "lists": {
                    name: [{"week": week.isoformat(), **h.as_dict()} for week, h in weeks.items()]
                    for name, weeks in list_health.items()
                },
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
    table.add_column("Bounced (hard+soft) / complained / unsubscribed")
    for rec in records:
        parts = []
        for ch, by_state in sorted(rec["deliveries"].items()):
            shown = " ".join(f"{s} {n:,}" for s, n in sorted(by_state.items()))
            parts.append(f"{ch}: {shown}")
        state_text = rec["state"] + (" (late)" if rec["late"] else "")
        if rec["note"] and rec["state"] in ("missed", "cancelled"):
            state_text += f"\n{rec['note']}"
        h = rec["list_health"]
        table.add_row(
            rec["id"],
            state_text,
            rec["instant"][:16].replace("T", " "),
            "\n".join(parts) or "—",
            f"{h['hard_bounces']}+{h['soft_bounces']} / {h['complaints']} / {h['unsubscribes']}",
        )
    out.print(table)
    _print_list_health(list_health)
    for rec in records:
        for f in rec["failures"]:
            out.print(f"{rec['id']} {f['channel']}: {f['count']:,} × {f['reason']}", markup=False)


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


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
