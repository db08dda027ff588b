"""No accidental early (or very late) sends by hand.

The clock never fires before an instant nor after the catch-up window. An organizer can,
on purpose: `scheduler send` (and the dashboard) first ask `check_send_time`, and go on
only when it finds nothing, or when the organizer confirmed (a terminal prompt, `--now`,
a checkbox).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from scheduler.calendar import Occurrence
from scheduler.config.model import Config
from scheduler.timefmt import duration, local_time

# A hand send this long before the instant is "a little early" (a test, a colleague who
# goes first) and goes out without a question.
EARLY_MARGIN = dt.timedelta(hours=1)


class Timing(StrEnum):
    EARLY = "early"  # more than EARLY_MARGIN before its instant
    LATE = "late"  # after its catch-up window


@dataclass(frozen=True, slots=True)
class SendTimeProblem:
    """Why sending now needs a confirmation, in words for the organizer."""

    occurrence_id: str
    timing: Timing
    instant: dt.datetime
    message: str  # "May Day 2027 statement is due 2027-05-01 07:00 +02:00, in 4 months ..."


def occurrence_title(config: Config, occ: Occurrence) -> str:
    """`May Day 2027 statement`: the campaign's name, the day's key and the step."""
    campaign = config.campaigns.get(occ.campaign_id)
    name = campaign.display_name() if campaign is not None else occ.campaign_id
    key = occ.id.split("/")[1]
    return f"{name} {key} {occ.step_id}"


def check_send_time(config: Config, occ: Occurrence, now: dt.datetime) -> SendTimeProblem | None:
    """None when sending the occurrence now is ordinary: from an hour before its instant to
    the end of its campaign's catch-up window. Otherwise the problem, to be confirmed."""
    title = occurrence_title(config, occ)
    due = local_time(occ.local)
    if occ.instant - now > EARLY_MARGIN:
        return SendTimeProblem(
            occ.id,
            Timing.EARLY,
            occ.instant,
            f"{title} is due {due}, in {duration(now, occ.instant)}; sending it now puts it "
            "out early",
        )
    campaign = config.campaigns.get(occ.campaign_id)
    if campaign is not None and now - occ.instant > campaign.catch_up_window:
        return SendTimeProblem(
            occ.id,
            Timing.LATE,
            occ.instant,
            f"{title} was due {due}, {duration(occ.instant, now)} ago, past its catch-up "
            f"window of {campaign.catch_up}; sending it now puts it out late",
        )
    return None


def planned_channels_note(
    config: Config, occ: Occurrence, channels: list[str], now: dt.datetime
) -> str:
    """When the channels still planned will go, said for the organizer who just sent the
    others by hand: at the instant, late inside the window, or not by themselves."""
    names = ", ".join(channels)
    due = local_time(occ.local)
    if occ.instant > now:
        return (
            f"{names} will go at {due}, in {duration(now, occ.instant)}, sent by the running "
            "clock (`scheduler run`, or `scheduler clock` with workers)"
        )
    campaign = config.campaigns.get(occ.campaign_id)
    window = campaign.catch_up_window if campaign is not None else dt.timedelta(0)
    if now - occ.instant <= window:
        until = local_time((occ.instant + window).astimezone(occ.local.tzinfo))
        return (
            f"{names} {'was' if len(channels) == 1 else 'were'} due {due}, "
            f"{duration(occ.instant, now)} ago; the running clock sends "
            f"{'it' if len(channels) == 1 else 'them'} late, inside the catch-up window "
            f"(until {until})"
        )
    return (
        f"{names} {'was' if len(channels) == 1 else 'were'} due {due}, past the catch-up "
        f"window: {'it' if len(channels) == 1 else 'they'} will not go by "
        f"{'itself' if len(channels) == 1 else 'themselves'}"
    )
