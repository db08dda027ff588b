"""From campaigns.yaml to occurrences: one step of one campaign at one instant.

Times are wall-clock times in the campaign's IANA zone; instants are UTC. Two DST rules hold
everywhere (docs/ARCHITECTURE.md, rule 3):

- a local time that does not exist (spring-forward gap) moves forward by the gap's length,
  so 02:30 on 2026-03-08 in New York becomes 03:30 EDT;
- a local time that happens twice (fall-back fold) means the first of the two instants.

Every adjustment is written into `Occurrence.note`, so organizers can see why a post went out
at 03:30 rather than 02:30.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from scheduler.config.model import Campaign, Config, Step, parse_date_rule
from scheduler.errors import UnknownCampaignError

UTC = dt.UTC

# A rule has no DTSTART of its own (the model forbids it), so INTERVAL and COUNT count from
# 1 January of first_year, or of 2000 when first_year is not set: a fixed point, so the same
# rule gives the same dates whatever window is asked for.
RRULE_EPOCH_YEAR = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class Occurrence:
    id: str
    campaign_id: str
    step_id: str
    anchor: dt.date
    local: dt.datetime
    instant: dt.datetime
    timezone: str
    channels: tuple[str, ...]
    template: str
    note: str | None = None
    # The step's wall-clock time before any zone is applied, and whether each subscriber
    # gets it at that time in their own zone (`deliver: local`, see scheduler.waves).
    wall: dt.datetime | None = None
    deliver_local: bool = False

    @property
    def day_key(self) -> str:
        """The year (or the date, for rrule campaigns) in the id: `2027` in
        `may-day/2027/statement` and in `usa/may-day/2027/statement`."""
        return self.id.rsplit("/", 2)[1]

    @property
    def chapter(self) -> str | None:
        """The chapter of a chapter campaign's occurrence (`usa`), None for the alliance's."""
        return self.campaign_id.split("/")[0] if "/" in self.campaign_id else None


def split_occurrence_id(occurrence_id: str) -> tuple[str, str, str] | None:
    """'may-day/2027/statement' or 'usa/may-day/2027/statement' -> (campaign, key, step)."""
    parts = occurrence_id.split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 4:
        return f"{parts[0]}/{parts[1]}", parts[2], parts[3]
    return None


def resolve_local(naive: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, str | None]:
    """Attach `zone` to a wall-clock time, applying the gap and fold rules above."""
    first = naive.replace(tzinfo=zone, fold=0)
    # fold=0 in a gap uses the offset from before the jump; going through UTC and back lands
    # on the wall time after the jump, i.e. moved forward by exactly the gap's length.
    round_trip = first.astimezone(UTC).astimezone(zone)
    if round_trip.replace(tzinfo=None) != naive:
        note = (
            f"{naive:%H:%M} does not exist on {naive:%Y-%m-%d} in {zone.key} (DST gap); "
            f"moved forward to {round_trip:%H:%M}"
        )
        return round_trip, note
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        note = (
            f"{naive:%H:%M} happens twice on {naive:%Y-%m-%d} in {zone.key} (DST fold); "
            f"used the first, {naive:%H:%M} {first.tzname()} (UTC{first:%z})"
        )
        return first, note
    return first, None


def _year_allowed(campaign: Campaign, year: int) -> bool:
    return (campaign.first_year is None or year >= campaign.first_year) and (
        campaign.last_year is None or year <= campaign.last_year
    )


def _yearly_date(month: int, day: int, year: int) -> dt.date:
    # '02-29' is a valid every-year rule: in other years the day falls on 28 February.
    if (month, day) == (2, 29) and not _is_leap(year):
        return dt.date(year, 2, 28)
    return dt.date(year, month, day)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def anchor_dates(campaign: Campaign, zone: ZoneInfo, start: dt.date, end: dt.date) -> list[dt.date]:
    """The campaign days in [start, end], both inclusive, in order."""
    if campaign.date is not None:
        year, month, day = parse_date_rule(campaign.date)
        years = [year] if year is not None else range(start.year, end.year + 1)
        days = (_yearly_date(month, day, y) for y in years if _year_allowed(campaign, y))
        return [d for d in days if start <= d <= end]
    assert campaign.rrule is not None  # the model requires exactly one of date and rrule
    first = dt.date(campaign.first_year or RRULE_EPOCH_YEAR, 1, 1)
    dtstart = dt.datetime.combine(first, campaign.time)
    lo, hi = dt.datetime.combine(start, dt.time.min), dt.datetime.combine(end, dt.time.max)
    try:
        rule = rrulestr(campaign.rrule, dtstart=dtstart)
    except ValueError:
        # An UNTIL written in UTC ("...Z") needs an aware DTSTART: use the campaign's zone.
        dtstart, lo, hi = (x.replace(tzinfo=zone) for x in (dtstart, lo, hi))
        rule = rrulestr(campaign.rrule, dtstart=dtstart)
    found = (d.date() for d in rule.between(lo, hi, inc=True))
    return [d for d in found if _year_allowed(campaign, d.year)]


def _occurrence_id(campaign_id: str, campaign: Campaign, anchor: dt.date, step_id: str) -> str:
    # Date rules give at most one day a year, so the year is enough and reads well;
    # an rrule can give several, so it needs the whole date.
    key = anchor.isoformat() if campaign.rrule is not None else str(anchor.year)
    return f"{campaign_id}/{key}/{step_id}"


def _build(
    config: Config, campaign_id: str, anchor: dt.date, step_id: str, step: Step
) -> Occurrence:
    campaign = config.campaigns[campaign_id]
    zone = config.campaign_zone(campaign)
    # Wall-clock arithmetic: "7 days before at 09:00" is 09:00 local, even across a DST change.
    naive = dt.datetime.combine(anchor, step.time or campaign.time) + step.offset.delta
    local, dst_note = resolve_local(naive, zone)
    notes = []
    every_leap_day = campaign.date is not None and parse_date_rule(campaign.date) == (None, 2, 29)
    if every_leap_day and anchor.day == 28:
        notes.append(f"29 February falls on 28 February in {anchor.year}")
    if dst_note:
        notes.append(dst_note)
    return Occurrence(
        id=_occurrence_id(campaign_id, campaign, anchor, step_id),
        campaign_id=campaign_id,
        step_id=step_id,
        anchor=anchor,
        local=local,
        instant=local.astimezone(UTC),
        timezone=zone.key,
        channels=tuple(step.channels),
        template=step.template,
        note="; ".join(notes) or None,
        wall=naive,
        deliver_local=step.deliver == "local",
    )


def _require_aware(*values: dt.datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no time zone; pass an aware datetime")


def find_campaign(config: Config, campaign_id: str) -> Campaign:
    """The campaign, or UnknownCampaignError with a did-you-mean and the known ids."""
    try:
        return config.campaigns[campaign_id]
    except KeyError:
        close = difflib.get_close_matches(campaign_id, config.campaigns, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(config.campaigns)) or "none"
        raise UnknownCampaignError(
            f"unknown campaign {campaign_id!r}{hint} (campaigns.yaml has: {known})"
        ) from None


def expand(
    config: Config,
    start: dt.datetime,
    end: dt.datetime,
    *,
    campaigns: Iterable[str] | None = None,
) -> list[Occurrence]:
    """Every occurrence whose instant is in [start, end), sorted by (instant, id)."""
    _require_aware(start, end)
    ids = list(config.campaigns) if campaigns is None else list(campaigns)
    found: list[Occurrence] = []
    for campaign_id in ids:
        campaign = find_campaign(config, campaign_id)
        zone = config.campaign_zone(campaign)
        deltas = [step.offset.delta for step in campaign.steps.values()]
        # A countdown step lies before its anchor and a follow-up after it: widen the search
        # for anchors by the largest offsets, plus two days for step times and zone offsets.
        margin = dt.timedelta(days=2)
        lo = start.astimezone(zone).date() - max(*deltas, dt.timedelta(0)) - margin
        hi = end.astimezone(zone).date() - min(*deltas, dt.timedelta(0)) + margin
        for anchor in anchor_dates(campaign, zone, lo, hi):
            for step_id, step in campaign.steps.items():
                occ = _build(config, campaign_id, anchor, step_id, step)
                if start <= occ.instant < end:
                    found.append(occ)
    return sorted(found, key=lambda o: (o.instant, o.id))


def occurrence(config: Config, occurrence_id: str) -> Occurrence:
    """Read an id such as 'may-day/2027/statement' back into its occurrence; an id that
    names none says which existing id is closest ("did you mean ...?")."""
    try:
        return _occurrence(config, occurrence_id)
    except UnknownCampaignError as e:
        close = _close_occurrence_ids(config, occurrence_id)
        if not close or close[0] == occurrence_id or "did you mean" in str(e):
            raise
        raise UnknownCampaignError(f"{e}; did you mean {close[0]!r}?") from None


def _close_occurrence_ids(config: Config, occurrence_id: str) -> list[str]:
    parts = occurrence_id.split("/")
    names = difflib.get_close_matches(parts[0], config.campaigns, n=1, cutoff=0.5)
    if not names:
        return []
    years = [int(p[:4]) for p in parts[1:] if p[:4].isdigit() and len(p.split("-")[0]) == 4]
    year = min(max(years[0] if years else dt.datetime.now(UTC).year, 1971), 9998)
    start = dt.datetime(year - 1, 1, 1, tzinfo=UTC)
    ids = [o.id for o in expand(config, start, start.replace(year=year + 2), campaigns=names)]
    # "may-day/2027" is most likely that day's statement.
    longer = [i for i in ids if i.startswith(occurrence_id.rstrip("/") + "/")]
    if longer:
        return sorted(longer, key=lambda i: not i.endswith("/statement"))[:1]
    return difflib.get_close_matches(occurrence_id, ids, n=1, cutoff=0.6)


def _occurrence(config: Config, occurrence_id: str) -> Occurrence:
    parts = split_occurrence_id(occurrence_id)
    if parts is None:
        raise UnknownCampaignError(
            f"cannot read occurrence id {occurrence_id!r}; "
            "write CAMPAIGN/YEAR/STEP, e.g. 'may-day/2027/statement' "
            "(CHAPTER/CAMPAIGN/YEAR/STEP for a chapter's, "
            "CAMPAIGN/YYYY-MM-DD/STEP for rrule campaigns)"
        )
    campaign_id, key, step_id = parts
    campaign = find_campaign(config, campaign_id)
    if step_id not in campaign.steps:
        known = ", ".join(campaign.steps)
        raise UnknownCampaignError(
            f"campaign {campaign_id!r} has no step {step_id!r} (its steps: {known})"
        )
    zone = config.campaign_zone(campaign)
    try:
        if campaign.rrule is not None:
            day = dt.date.fromisoformat(key)
            start, end = day, day
        else:
            if not (key.isdigit() and len(key) == 4):
                raise ValueError(key)  # "27" is not the year 27
            year = int(key)
            start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    except ValueError:
        form = "YYYY-MM-DD" if campaign.rrule is not None else "a year such as 2027"
        raise UnknownCampaignError(
            f"cannot read {key!r} in {occurrence_id!r}; campaign {campaign_id!r} expects {form}"
        ) from None
    anchors = anchor_dates(campaign, zone, start, end)
    if len(anchors) != 1:
        rule = campaign.rrule or campaign.date
        raise UnknownCampaignError(
            f"campaign {campaign_id!r} ({rule}) has no campaign day at {key!r}"
            + _year_bounds(campaign)
        )
    return _build(config, campaign_id, anchors[0], step_id, campaign.steps[step_id])


def _year_bounds(campaign: Campaign) -> str:
    bounds = [f"first_year {campaign.first_year}"] if campaign.first_year else []
    bounds += [f"last_year {campaign.last_year}"] if campaign.last_year else []
    return f" ({', '.join(bounds)})" if bounds else ""


def next_occurrences(
    config: Config, now: dt.datetime, limit: int | None = None, days: int | None = None
) -> list[Occurrence]:
    """Occurrences from `now` (inclusive) on: within `days` if given; otherwise within the
    coming year, looking further ahead (up to ten years) until `limit` are found."""
    _require_aware(now)
    horizons = [days] if days is not None else [366, 366 * 2, 366 * 5, 366 * 10]
    found: list[Occurrence] = []
    for horizon in horizons:
        found = expand(config, now, now + dt.timedelta(days=horizon))
        if limit is None or len(found) >= limit:
            break
    return found if limit is None else found[:limit]
