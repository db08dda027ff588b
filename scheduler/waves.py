"""Each subscriber at their own hour: the waves of a `deliver: local` step.

A `deliver: local` step is still one occurrence (one id, one claim, one ledger). Each of its
email deliveries carries a `due_at`: the step's wall-clock time in the subscriber's own zone,
or in the occurrence's zone (the chapter's or campaign's) for subscribers without one. Posts
go at the occurrence's instant. A wave is the set of deliveries due at one instant: zones
with the same offset that day share a wave. Waves go out earliest first (UTC+14 first).

Pure: zones and counts are arguments. The DST rules are the calendar's, applied per zone
(`calendar.resolve_local`): a wall time in a gap moves forward, a fold takes the first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduler.calendar import Occurrence, resolve_local

UTC = dt.UTC

# Every zone's offset lies in [-12h, +14h]: a local-time step's waves all fall inside
# [wall - 14h, wall + 12h] read as UTC. The clock looks this far around an occurrence.
EARLIEST_OFFSET = dt.timedelta(hours=14)
LATEST_OFFSET = dt.timedelta(hours=12)
# How far a wave can lie from the occurrence's own instant (zone offsets differ by 26h).
SPREAD = EARLIEST_OFFSET + LATEST_OFFSET


@dataclass(frozen=True, slots=True)
class Wave:
    instant: dt.datetime  # UTC
    zones: tuple[str, ...]  # sorted; the occurrence's zone stands for "no timezone"
    size: int  # email deliveries (or subscribers, before the fan-out)
    note: str | None = None  # a DST adjustment in one of its zones

    def local(self, zone: str | None = None) -> dt.datetime:
        """The wave's instant on the wall clocks of `zone` (default: its first zone)."""
        return self.instant.astimezone(_zone(zone or self.zones[0]))

    def as_json(self) -> dict[str, object]:
        return {
            "instant": self.instant.isoformat().replace("+00:00", "Z"),
            "local": self.local().isoformat(),
            "zones": list(self.zones),
            "size": self.size,
            "note": self.note,
        }


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_instant(occ: Occurrence, zone: str | None) -> tuple[dt.datetime, str | None]:
    """When the occurrence is due for someone in `zone` (None: the occurrence's zone), with
    the DST note if the wall time had to be adjusted there."""
    if zone is None or zone == occ.timezone or not occ.deliver_local or occ.wall is None:
        return occ.instant, None
    local, note = resolve_local(occ.wall, _zone(zone))
    return local.astimezone(UTC), note


def due_by_zone(occ: Occurrence, zones: Mapping[str | None, int]) -> dict[str, dt.datetime]:
    """zone -> instant for every named zone of the audience (the fan-out's `due_at`)."""
    return {z: zone_instant(occ, z)[0] for z in zones if z is not None}


def waves(occ: Occurrence, zones: Mapping[str | None, int]) -> list[Wave]:
    """The occurrence's waves for an audience counted by zone (None: no timezone), earliest
    first. Not a local-time step: one wave, at the occurrence's instant."""
    if not occ.deliver_local:
        total = sum(zones.values())
        return [Wave(occ.instant, (occ.timezone,), total)] if total else []
    grouped: dict[dt.datetime, tuple[set[str], int, list[str]]] = {}
    for zone, count in zones.items():
        if count <= 0:
            continue
        name = zone or occ.timezone
        instant, note = zone_instant(occ, name)
        names, size, notes = grouped.get(instant, (set(), 0, []))
        names.add(name)
        if note:
            notes.append(note)
        grouped[instant] = (names, size + count, notes)
    return [
        Wave(instant, tuple(sorted(names)), size, "; ".join(sorted(set(notes))) or None)
        for instant, (names, size, notes) in sorted(grouped.items())
    ]
