"""What to do about an occurrence whose instant has come: fire it, fire it late, or record it
as missed. Pure: the time is an argument, so tests pin every rule with explicit clocks.

- due now (up to `ON_TIME` late): fire;
- later than that but inside the campaign's `catch_up` window (default 6h): fire, marked late,
  with a note saying how late and why;
- outside the window: never sent, recorded as `missed` and reported;
- already claimed, cancelled or missed in the store: nothing (a stuck `firing` one is resumed);
- its campaign is paused: wait (if it is resumed inside the window it fires late);
- its campaign is blocked by a problem of its own (a missing statement, a template that
  fails): recorded `planned` with the reason at its instant, and fired late if the file is
  fixed inside the catch-up window; past the window it is recorded `missed` with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from scheduler.calendar import Occurrence
from scheduler.config.model import Config
from scheduler.delivery.ledger import OccurrenceRow

# A job that runs this late is still "on time": scheduler wake-ups and a busy machine.
ON_TIME = dt.timedelta(seconds=10)


class Action(StrEnum):
    FIRE = "fire"
    LATE = "late"
    MISSED = "missed"
    RESUME = "resume"  # claimed before, never finished (a crash): carry on
    WAIT = "wait"  # its campaign is paused
    BLOCKED = "blocked"  # its campaign has a problem of its own: wait for a fix, say why


@dataclass(frozen=True, slots=True)
class Decision:
    occurrence: Occurrence
    action: Action
    note: str | None = None


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def decide(
    config: Config,
    occurrences: Iterable[Occurrence],
    known: Mapping[str, OccurrenceRow],
    paused: set[str],
    now: dt.datetime,
    *,
    stale_after: dt.timedelta = dt.timedelta(minutes=5),
    blocked: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Decisions for the occurrences whose instant is not after `now`.

    `blocked` maps a campaign that cannot be sent to why.
    """
    blocked = blocked or {}
    out: list[Decision] = []
    for occ in occurrences:
        if occ.instant > now:
            continue
        campaign = config.campaigns.get(occ.campaign_id)
        if campaign is None:
            continue
        late_by = now - occ.instant
        row = known.get(occ.id)
        # A `planned` row only says why it has not fired yet (it was blocked): decide again.
        if row is not None and row.state != "planned":
            stale = row.state == "firing" and now - row.updated_at > stale_after
            if stale and late_by <= campaign.catch_up_window:
                out.append(Decision(occ, Action.RESUME, "resuming after an interruption"))
            continue
        if occ.campaign_id in paused:
            out.append(Decision(occ, Action.WAIT, "campaign paused"))
            continue
        why = blocked.get(occ.campaign_id)
        if why is not None:
            window = campaign.catch_up_window
            if late_by <= max(window, ON_TIME):
                out.append(
                    Decision(
                        occ,
                        Action.BLOCKED,
                        f"blocked at its instant: {why}; it is sent late if fixed before "
                        f"{occ.instant + window:%Y-%m-%d %H:%M} UTC (catch-up window "
                        f"{campaign.catch_up}), otherwise recorded as missed",
                    )
                )
            else:
                out.append(
                    Decision(
                        occ,
                        Action.MISSED,
                        f"not sent: blocked ({why}) and not fixed inside the catch-up window "
                        f"of {campaign.catch_up} after {occ.instant:%Y-%m-%d %H:%M} UTC",
                    )
                )
            continue
        if late_by <= ON_TIME:
            out.append(Decision(occ, Action.FIRE))
        elif late_by <= campaign.catch_up_window:
            out.append(
                Decision(
                    occ,
                    Action.LATE,
                    f"fired {_ago(late_by)} late (due {occ.instant:%Y-%m-%d %H:%M} UTC); inside "
                    f"the catch-up window of {campaign.catch_up}",
                )
            )
        else:
            out.append(
                Decision(
                    occ,
                    Action.MISSED,
                    f"due {occ.instant:%Y-%m-%d %H:%M} UTC while nothing was running; "
                    f"{_ago(late_by)} late is outside the catch-up window of {campaign.catch_up}, "
                    "so it was not sent",
                )
            )
    return out
