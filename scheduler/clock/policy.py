"""What to do about an occurrence whose instant has come: fire it, fire it late, or record it
as missed. Pure: the time is an argument, so tests pin every rule with explicit clocks.

- due now (up to `ON_TIME` late): fire;
- later than that but inside the campaign's `catch_up` window (default 6h): fire, marked late,
  with a note saying how late and why;
- outside the window: never sent, recorded as `missed` and reported;
- already claimed, cancelled or missed in the store: nothing (a stuck `firing` one is resumed,
  and so is one with deliveries deferred after a temporary failure once their time comes);
- claimed for some channels only (sent by hand before the instant): the channels still
  planned are fired, late or missed by the same rules;
- its campaign is paused: wait (if it is resumed inside the window it fires late);
- it needs review and has no valid approval (`held`, from `review.gate`): hold; approved
  inside the window it fires late, after the window it is recorded missed.
- its campaign is blocked by a problem of its own (a missing statement, a template that
  fails): recorded `planned` with the reason at its instant, and fired late if the file is
  fixed inside the catch-up window; past the window it is recorded `missed` with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from scheduler.calendar import Occurrence
from scheduler.config.model import Config
from scheduler.delivery.channel_state import ChannelRow, still_planned
from scheduler.delivery.ledger import OccurrenceRow
from scheduler.timefmt import local_time

# A job that runs this late is still "on time": scheduler wake-ups and a busy machine.
ON_TIME = dt.timedelta(seconds=10)


FINAL_OCCURRENCE = ("done", "missed", "cancelled")


class Action(StrEnum):
    FIRE = "fire"
    LATE = "late"
    MISSED = "missed"
    RESUME = "resume"  # claimed before, never finished (a crash): carry on
    WAIT = "wait"  # its campaign is paused
    HOLD = "hold"  # it needs an approval it does not have
    BLOCKED = "blocked"  # its campaign has a problem of its own: wait for a fix, say why


@dataclass(frozen=True, slots=True)
class Decision:
    occurrence: Occurrence
    action: Action
    note: str | None = None
    # The channels to act on when some of the step's went out already (by hand); empty
    # means every channel of the step.
    channels: tuple[str, ...] = ()


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
    channels: Mapping[str, Mapping[str, ChannelRow]] | None = None,
    stale_after: dt.timedelta = dt.timedelta(minutes=5),
    held: Mapping[str, str] | None = None,
    blocked: Mapping[str, str] | None = None,
    retry_due: Collection[str] = (),
) -> list[Decision]:
    """Decisions for the occurrences whose instant is not after `now`.

    `channels` (occurrence -> channel -> row) lets an occurrence some of whose channels went
    out by hand fire the channels still planned; without it a claimed occurrence counts as
    claimed on every channel. `blocked` maps a campaign that cannot be sent to why.
    `retry_due`: occurrences with deliveries deferred after a temporary failure whose next
    attempt has come; they are resumed whatever their catch-up window (the window that
    counts for them is their channel's retry window).
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
        remaining: tuple[str, ...] = ()  # empty: every channel of the step
        # A `planned` row only says why it has not fired yet (it was blocked): decide again.
        if row is not None and row.state != "planned":
            if row.state in FINAL_OCCURRENCE:
                continue
            planned = (
                still_planned(occ.channels, channels.get(occ.id, {}))
                if channels is not None
                else []
            )
            if not planned:
                stale = row.state == "firing" and now - row.updated_at > stale_after
                if row.state == "firing" and occ.id in retry_due:
                    out.append(Decision(occ, Action.RESUME, "sending deferred deliveries"))
                elif stale and late_by <= campaign.catch_up_window:
                    out.append(Decision(occ, Action.RESUME, "resuming after an interruption"))
                continue
            remaining = tuple(planned)
        if occ.campaign_id in paused:
            out.append(Decision(occ, Action.WAIT, "campaign paused", remaining))
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
                        remaining,
                    )
                )
            else:
                out.append(
                    Decision(
                        occ,
                        Action.MISSED,
                        f"not sent: blocked ({why}) and not fixed inside the catch-up window "
                        f"of {campaign.catch_up} after {occ.instant:%Y-%m-%d %H:%M} UTC",
                        remaining,
                    )
                )
            continue
        if held and occ.id in held:
            if late_by <= campaign.catch_up_window:
                out.append(Decision(occ, Action.HOLD, f"held for review: {held[occ.id]}"))
            else:
                out.append(
                    Decision(
                        occ,
                        Action.MISSED,
                        f"held for review since {occ.instant:%Y-%m-%d %H:%M} UTC "
                        f"({held[occ.id]}); not approved within the catch-up window of "
                        f"{campaign.catch_up}, so it was not sent",
                    )
                )
            continue
        due = local_time(occ.local)
        if late_by <= ON_TIME:
            out.append(Decision(occ, Action.FIRE, None, remaining))
        elif late_by <= campaign.catch_up_window:
            out.append(
                Decision(
                    occ,
                    Action.LATE,
                    f"fired {_ago(late_by)} late (due {due}); inside "
                    f"the catch-up window of {campaign.catch_up}",
                    remaining,
                )
            )
        else:
            out.append(
                Decision(
                    occ,
                    Action.MISSED,
                    f"due {due} while nothing was running; "
                    f"{_ago(late_by)} late is outside the catch-up window of {campaign.catch_up}, "
                    "so it was not sent",
                    remaining,
                )
            )
    return out
