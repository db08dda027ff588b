"""The clock process: `scheduler run` (embedded) and `scheduler clock` (distributed).

APScheduler (3.x) holds one date job per upcoming occurrence, so each fires at its instant;
a sweep every few seconds reconciles with the store, so nothing depends on a job having run:
an occurrence that passed while nothing ran is fired late inside its catch-up window or
recorded as missed, and one left half-sent by a crash is resumed. Jobs never expire
(`misfire_grace_time=None`): lateness is judged by `clock.policy`, not by APScheduler.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from scheduler import calendar, settings, waves
from scheduler.calendar import Occurrence
from scheduler.channels import get_channel_class
from scheduler.clock.leader import LeaderLock
from scheduler.clock.policy import Action, Decision, LocalWaves, decide
from scheduler.config.model import Config
from scheduler.config.project import Project
from scheduler.delivery import alerts, ledger
from scheduler.delivery import clock_state as state
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.fire import fire, sync_sources
from scheduler.delivery.ledger import Claim
from scheduler.errors import Diagnostic
from scheduler.review import approvals, gate, holds
from scheduler.review.policy import DEFAULT_ONE_OFF, has_approvers, review_for
from scheduler.store import problems
from scheduler.store.schema import Role
from scheduler.store.sizes import AudienceSizes, audience_sizes
from scheduler.timefmt import local_time
from scheduler.validate import validate_project

log = logging.getLogger("scheduler.clock")

JOB_PREFIX = "occurrence:"
WAVE_PREFIX = "wave:"  # one date job per wave of a `deliver: local` step: "wave:ID@INSTANT"
ZONES_FRESH = dt.timedelta(minutes=1)  # how long an audience's count by zone is reused
SYNC_PREFIX = "sync:"
# Lists with a CSV source are imported this long before an instant (embedded mode), so the
# fire at the instant finds the file unchanged and goes straight to the fan-out: reading
# 100,000 rows takes seconds. A file changed since is read again at the instant.
SYNC_AHEAD = dt.timedelta(minutes=2)
NEXT_LISTED = 8  # the next occurrences that get a timer (and are listed) however far ahead
RETRY_EVERY = dt.timedelta(minutes=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Clock:
    def __init__(
        self,
        project: Project,
        engine: Engine,
        *,
        distributed: bool = False,
        leader: LeaderLock | None = None,
        redis_url: str | None = None,
        tick_seconds: float = 5.0,
        horizon: dt.timedelta = dt.timedelta(days=2),
        now: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.project = project
        self.engine = engine
        self.distributed = distributed
        self.leader = leader
        self.redis_url = redis_url
        self.tick_seconds = tick_seconds
        self.horizon = horizon
        self.now = now
        self.stop_event = threading.Event()
        self.ctx = DeliveryContext(project, engine, redis_url=redis_url, stop=self.stop_event)
        self.scheduler = BackgroundScheduler(
            timezone=dt.UTC,
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._waiting_logged: set[str] = set()
        # When each upcoming reviewed occurrence was last rendered to see if it needs a
        # reminder: once a minute is enough, not at every sweep.
        self._reminder_checked: dict[str, dt.datetime] = {}
        self._fingerprint = self._files_fingerprint()
        self._last_rebuild = self.now()
        self._blocked_logged: set[tuple[str, str]] = set()
        self._retried: dict[str, dt.datetime] = {}  # when deferred deliveries were resumed
        self._sizes: tuple[dt.datetime, AudienceSizes] | None = None  # see _audience_zones
        self._waves_enqueued: dict[str, dt.datetime] = {}  # see _wave_enqueued
        # Campaigns unblocked by a reload whose entry had failed the schema (so their dates
        # were unknown): the next sweep looks back to when they were blocked.
        self._look_back: dict[str, dt.datetime] = {}
        self.fired: list[str] = []  # occurrence ids this process fired (for tests and logs)
        # The occurrences with a timer, in order: what the start lists and the log counts.
        self.scheduled: list[Occurrence] = []
        # Called once the schedule is built, before the start is logged (the CLI's briefing).
        self.on_start: Callable[[Clock], None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self.tick_seconds),
            id="tick",
            next_run_time=self.now(),
        )
        self.scheduler.add_job(self.watch, IntervalTrigger(seconds=2), id="watch")
        self.rebuild()
        self.announce_blocked()
        if self.on_start is not None:
            self.on_start(self)
        self.scheduler.start()
        log.info("event=start mode=%s occurrences_scheduled=%d", self.mode, len(self.jobs()))

    @property
    def mode(self) -> str:
        return "distributed" if self.distributed else "embedded"

    def run_forever(self) -> None:
        """Start, then block until SIGTERM or SIGINT; SIGHUP reloads campaigns.yaml."""
        done = threading.Event()

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("event=stopping signal=%s", signal.Signals(signum).name)
            done.set()

        def hup(_signum: int, _frame: FrameType | None) -> None:
            self.reload(reason="SIGHUP")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        self.start()
        while not done.wait(1.0):
            pass
        self.shutdown()

    def shutdown(self) -> None:
        # Batches check this between batches: the one in hand finishes, the rest stay
        # pending and are resumed by the next start.
        self.stop_event.set()
        self.scheduler.shutdown(wait=True)
        if self.leader is not None:
            self.leader.release()
        self.ctx.close()
        log.info("event=stopped")

    def jobs(self) -> list[str]:
        return [
            j.id.removeprefix(JOB_PREFIX)
            for j in self.scheduler.get_jobs()
            if j.id.startswith(JOB_PREFIX)
        ]

    # --- schedule -------------------------------------------------------------------------

    def rebuild(self) -> None:
        """One date job per occurrence in the coming `horizon`, and for the next few however
        far (the ones the start lists); the sweep covers the rest."""
        now = self.now()
        config = self.project.config
        upcoming = calendar.expand(config, now, now + self.horizon)
        upcoming += calendar.next_occurrences(config, now, limit=NEXT_LISTED)
        wanted = {JOB_PREFIX + o.id: o for o in sorted(upcoming, key=lambda o: (o.instant, o.id))}
        self.scheduled = list(wanted.values())
        # A local-time step's waves lie up to a day on either side of its instant.
        timed: dict[str, tuple[Occurrence, dt.datetime]] = {
            job_id: (occ, occ.instant) for job_id, occ in wanted.items()
        }
        around = (
            calendar.expand(config, now - waves.SPREAD, now + self.horizon + waves.SPREAD)
            if _has_local_steps(config)
            else []
        )
        zones: dict[str, dict[str | None, int]] = {}
        for occ in (o for o in around if o.deliver_local):
            for instant in self._wave_instants(occ, zones):
                if instant > now:
                    timed[f"{WAVE_PREFIX}{occ.id}@{instant:%Y%m%dT%H%M%SZ}"] = (occ, instant)
        syncs = {
            SYNC_PREFIX + o.id: o for o in wanted.values() if o.instant > now and self._syncs(o)
        }
        for job in self.scheduler.get_jobs():
            timer = job.id.startswith((JOB_PREFIX, WAVE_PREFIX, SYNC_PREFIX))
            if timer and job.id not in timed and job.id not in syncs:
                job.remove()
        for job_id, (occ, instant) in timed.items():
            self.scheduler.add_job(
                self.on_time,
                DateTrigger(run_date=instant),
                id=job_id,
                args=[occ.id],
                replace_existing=True,
            )
        for job_id, occ in syncs.items():
            self.scheduler.add_job(
                self.sync_ahead,
                DateTrigger(run_date=max(occ.instant - SYNC_AHEAD, now)),
                id=job_id,
                args=[occ.id],
                replace_existing=True,
            )
        self._last_rebuild = now

    def _wave_instants(
        self, occ: Occurrence, zones: dict[str, dict[str | None, int]]
    ) -> tuple[dt.datetime, ...]:
        """The instants of a local-time occurrence's waves for its audience as it is now
        (`zones` caches each campaign's audience by zone for one pass)."""
        if occ.campaign_id not in zones:
            zones[occ.campaign_id] = self._audience_zones(occ.campaign_id)
        return tuple(w.instant for w in waves.waves(occ, zones[occ.campaign_id]))

    def _audience_zones(self, campaign_id: str) -> dict[str | None, int]:
        """A campaign's audience by zone: the store plus the lists' CSV sources (a send
        syncs them first, so a zone only in a CSV still has its wave on time). Counted at
        most once a minute: the sweep runs every few seconds."""
        now = self.now()
        if self._sizes is None or now - self._sizes[0] >= ZONES_FRESH:
            self._sizes = (now, audience_sizes(self.project, self.engine))
        campaign = self.project.config.campaigns[campaign_id]
        return self._sizes[1].by_zone(campaign.audience)

    def _local_waves(
        self, occurrences: list[Occurrence], now: dt.datetime
    ) -> dict[str, LocalWaves]:
        """For the policy: each local-time occurrence's waves for its audience, and (from the
        ledger, which has the last word once it is fanned out) the earliest wave due that
        nobody sends."""
        local = [o for o in occurrences if o.deliver_local]
        if not local:
            return {}
        open_due = ledger.open_waves(self.engine, [o.id for o in local], now)
        zones: dict[str, dict[str | None, int]] = {}
        return {
            occ.id: LocalWaves(self._wave_instants(occ, zones), open_due.get(occ.id))
            for occ in local
        }

    def _syncs(self, occ: Occurrence) -> bool:
        """The occurrence emails a list with a CSV source, and this process sends it (in
        distributed mode a worker does, with its own memory of what it synced)."""
        config = self.project.config
        campaign = config.campaigns.get(occ.campaign_id)
        if self.distributed or campaign is None:
            return False
        emails = any(
            c in config.channels and get_channel_class(config.channels[c].type).kind == "email"
            for c in occ.channels
        )
        sourced = any(
            (lst := config.lists.get(name)) is not None and lst.source is not None
            for name in campaign.audience
        )
        return emails and sourced

    def sync_ahead(self, occurrence_id: str) -> None:
        """Import the occurrence's lists before its instant (see SYNC_AHEAD)."""
        if not self.leading():
            return
        config = self.project.config
        try:
            occ = calendar.occurrence(config, occurrence_id)
        except Exception:  # the campaign was edited away meanwhile
            return
        if occ.campaign_id in self.project.blocked:
            return
        row = state.known(self.engine, [occ.id]).get(occ.id)
        if row is not None and row.state != "planned":
            return  # fired (or settled) already
        try:
            synced = sync_sources(self.ctx, config.campaigns[occ.campaign_id].audience)
        except Exception:  # the fire at the instant tries again and reports it
            log.exception("event=sync_ahead_failed occurrence=%s", occ.id)
            return
        log.info(
            "event=synced_ahead occurrence=%s lists=%s",
            occ.id,
            ",".join(f"{name}:{n}" for name, n in synced.items()),
        )

    def watch(self) -> None:
        fingerprint = self._files_fingerprint()
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self.reload(reason="file changed")

    def blocked_reasons(self) -> dict[str, str]:
        return {cid: _reason(found) for cid, found in self.project.blocked.items() if found}

    def announce_blocked(self) -> None:
        """Say (and record for `status`) which campaigns cannot be sent, and why."""
        for cid, why in self.blocked_reasons().items():
            log.error("event=blocked campaign=%s reason=%r", cid, why)
        problems.record_blocked(self.engine, self.project.blocked)

    def reload(self, *, reason: str) -> bool:
        """Take a changed campaigns.yaml unless a shared structure is broken (then keep the
        old schedule); a campaign with a problem of its own is blocked, the others go on."""
        report = validate_project(self.project.path)
        if report.project is None:
            for d in report.fatal or report.errors:
                log.error("event=reload_refused reason=%r problem=%s", reason, d.format())
            log.error(
                "event=reload_refused errors=%d keeping=previous schedule",
                len(report.fatal or report.errors),
            )
            return False
        since = {p.subject: p.since for p in problems.current(self.engine, problems.CAMPAIGN)}
        for cid in set(self.project.blocked) - set(report.project.blocked):
            if cid not in self.project.config.campaigns and cid in since:
                self._look_back[cid] = since[cid]
        old = self.ctx
        self.project = report.project
        self.ctx = DeliveryContext(
            self.project, self.engine, redis_url=self.redis_url, stop=self.stop_event
        )
        old.close_when_idle()
        self.rebuild()
        self.announce_blocked()
        log.info("event=reloaded reason=%r occurrences_scheduled=%d", reason, len(self.jobs()))
        return True

    def _files_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        roots = [self.project.path, self.project.statements_dir, self.project.templates_dir]
        files: list[Path] = []
        for root in roots:
            if root.is_file():
                files.append(root)
            elif root.is_dir():
                files.extend(p for p in root.rglob("*") if p.is_file())
        out = []
        for f in sorted(files):
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_mtime_ns, st.st_size))
        return tuple(out)

    # --- firing -----------------------------------------------------------------------------

    def leading(self) -> bool:
        return self.leader is None or self.leader.is_leader

    def on_time(self, occurrence_id: str) -> None:
        if self.leader is not None and not self.leader.heartbeat():
            return
        try:
            occ = calendar.occurrence(self.project.config, occurrence_id)
        except Exception:  # the campaign was edited away meanwhile
            log.info("event=skip occurrence=%s reason=no longer in campaigns.yaml", occurrence_id)
            return
        self.handle([occ])

    def tick(self) -> None:
        """Heartbeat, then reconcile: everything due since the clock was last seen."""
        if self.leader is not None and not self.leader.heartbeat():
            return
        now = self.now()
        config = self.project.config
        longest = max(
            (c.catch_up_window for c in config.campaigns.values()), default=dt.timedelta(hours=6)
        )
        seen = state.last_seen(self.engine)
        # Never look further back than the longest catch-up window plus the time we were
        # gone: a fresh install does not call last year's May Day "missed".
        since = (seen - dt.timedelta(minutes=1)) if seen else now - longest
        candidates = calendar.expand(config, since, now + dt.timedelta(seconds=1))
        ids = {o.id for o in candidates}
        # A local-time step is due from its first wave to its last: up to a day before and
        # after its own instant.
        zones: dict[str, dict[str | None, int]] = {}
        around = (
            calendar.expand(config, since - waves.SPREAD, now + waves.SPREAD)
            if _has_local_steps(config)
            else []
        )
        for occ in around:
            if occ.deliver_local and occ.id not in ids:
                instants = self._wave_instants(occ, zones) or (occ.instant,)
                if instants[0] <= now and instants[-1] >= since:
                    candidates.append(occ)
                    ids.add(occ.id)
        for hold in holds.open_holds(self.engine):  # held for review: still waiting
            if hold.occurrence_id not in ids and hold.campaign in config.campaigns:
                try:
                    candidates.append(calendar.occurrence(config, hold.occurrence_id))
                    ids.add(hold.occurrence_id)
                except Exception:
                    continue
        for cid, start in list(self._look_back.items()):
            del self._look_back[cid]
            if cid in config.campaigns:
                back = calendar.expand(
                    config, start - dt.timedelta(minutes=1), now, campaigns=[cid]
                )
                candidates.extend(o for o in back if o.id not in ids)
                ids.update(o.id for o in back)
        # Interrupted sends, and occurrences blocked at their instant, whenever they were due.
        for row in [*state.firing(self.engine), *state.planned(self.engine)]:
            if row.id not in ids and row.campaign in config.campaigns:
                try:
                    candidates.append(calendar.occurrence(config, row.id))
                except Exception:
                    continue
        self.handle(candidates, now=now)
        self.remind(now)
        state.mark_seen(self.engine, now)
        if now - self._last_rebuild > dt.timedelta(hours=1):
            self.rebuild()

    def handle(self, occurrences: list[Occurrence], *, now: dt.datetime | None = None) -> None:
        now = now or self.now()
        with self._lock:
            ids = [o.id for o in occurrences]
            known = state.known(self.engine, ids)
            channels = state.channels_of(self.engine, [i for i in ids if i in known])
            # A held occurrence settled some other way (sent by hand once approved,
            # cancelled) is held no more.
            for hold in holds.open_holds(self.engine):
                row = known.get(hold.occurrence_id)
                if row is not None and row.state != "planned":
                    holds.release(self.engine, hold.occurrence_id, row.state)
            paused = state.paused(self.engine)
            held = gate.unapproved(self.project, self.engine, occurrences, known, now)
            # Deferred deliveries whose next attempt has come. Resumed at most once a
            # minute: in distributed mode the workers may take a few seconds to claim them.
            self._retried = {i: t for i, t in self._retried.items() if now - t < RETRY_EVERY}
            retry_due = (ledger.deferred_due(self.engine, now) & set(ids)) - set(self._retried)
            self._retried.update((i, now) for i in retry_due)
            decisions = [
                d
                for d in decide(
                    self.project.config,
                    occurrences,
                    known,
                    paused,
                    now,
                    channels=channels,
                    held=held,
                    blocked=self.blocked_reasons(),
                    retry_due=retry_due,
                    local=self._local_waves(occurrences, now),
                )
                if d.occurrence.id not in self._in_flight and not self._wave_enqueued(d, now)
            ]
            for d in decisions:
                if d.action in (Action.FIRE, Action.LATE, Action.RESUME, Action.WAVE):
                    self._in_flight.add(d.occurrence.id)
        for d in decisions:
            self.act(d)

    def _wave_enqueued(self, d: Decision, now: dt.datetime) -> bool:
        """Distributed: a wave handed to the workers stays pending until one claims it;
        enqueue it again only once a sender's lease has passed (a worker that died), not at
        every sweep. (Embedded, the wave is in flight in this process until it is sent.)"""
        if not self.distributed or d.action is not Action.WAVE:
            return False
        last = self._waves_enqueued.get(d.occurrence.id)
        return last is not None and now - last < dt.timedelta(seconds=settings.lease_seconds())

    def remind(self, now: dt.datetime) -> None:
        """Remind approvers of an occurrence that needs review and has none, once, from
        its review's `remind` time before the instant."""
        config = self.project.config
        reviews = [
            r
            for c in config.campaigns.values()
            for r in [c.review, *(s.review for s in c.steps.values())]
            if r is not None and r.required
        ]
        ahead = max([r.remind_before for r in reviews] + [DEFAULT_ONE_OFF.remind_before])
        approvers_exist = has_approvers(self.engine)
        if not approvers_exist:
            return
        for occ in calendar.expand(config, now, now + ahead):
            checked = self._reminder_checked.get(occ.id)
            if checked is not None and now - checked < dt.timedelta(minutes=1):
                continue
            self._reminder_checked[occ.id] = now
            if alerts.alerted(self.ctx, f"remind:{occ.id}"):
                continue
            review = review_for(config, occ, approvers_exist)
            if review is None or occ.instant - review.remind_before > now:
                continue
            found = approvals.status(self.project, self.engine, occ, approvers_exist=True)
            if found.approved:
                continue
            to = review.by or alerts.recipients(self.ctx, occ.campaign_id, [Role.APPROVER])
            alerts.reminder(self.ctx, occ, to, found.missing)

    def act(self, d: Decision) -> None:
        occ = d.occurrence
        only = list(d.channels) or None
        if d.action is Action.MISSED:
            if state.record_missed(self.engine, occ, d.note or "missed", only):
                log.warning(
                    "event=missed occurrence=%s channels=%s note=%r",
                    occ.id,
                    ",".join(d.channels or occ.channels),
                    d.note,
                )
                holds.release(self.engine, occ.id, "missed")
                alerts.missed(self.ctx, occ, d.note or "missed")
            return
        if d.action is Action.HOLD:
            if holds.hold(self.engine, occ):
                log.warning("event=held occurrence=%s note=%r", occ.id, d.note)
                alerts.held(self.ctx, occ, d.note or "held for review")
            return
        if d.action is Action.BLOCKED:
            state.record_blocked(self.engine, occ, d.note or "blocked")
            why = self.blocked_reasons().get(occ.campaign_id, "")
            if (occ.id, why) not in self._blocked_logged:
                self._blocked_logged.add((occ.id, why))
                log.error(
                    "event=blocked occurrence=%s campaign=%s reason=%r",
                    occ.id,
                    occ.campaign_id,
                    why,
                )
            return
        if d.action is Action.WAIT:
            if occ.id not in self._waiting_logged:
                self._waiting_logged.add(occ.id)
                log.info("event=waiting occurrence=%s reason=campaign paused", occ.id)
            return
        if d.action is Action.RESUME:
            # At most one resume per stall window, however long the send takes.
            ledger.touch_occurrence(self.engine, occ.id)
            log.info("event=resume occurrence=%s reason=%r", occ.id, d.note)
        if d.action is Action.WAVE:
            self._waves_enqueued[occ.id] = self.now()
            ledger.touch_occurrence(self.engine, occ.id)
            log.info("event=wave occurrence=%s note=%r", occ.id, d.note)
        note = d.note
        if holds.release(self.engine, occ.id, "fired"):
            note = f"{note}; after being held for review" if note else "approved after a hold"
        try:
            self._fire(occ, late=d.action is Action.LATE, note=note, channels=only)
        except Exception:
            log.exception("event=fire_failed occurrence=%s", occ.id)
        finally:
            with self._lock:
                self._in_flight.discard(occ.id)

    def _fire(
        self, occ: Occurrence, *, late: bool, note: str | None, channels: list[str] | None
    ) -> None:
        """Fire `channels` (None: the whole step) of the occurrence."""
        started = self.now()
        shown = ",".join(channels or occ.channels)
        if self.distributed:
            from scheduler.tasks import fire_occurrence_task

            claim, _row = ledger.claim_occurrence(
                self.engine, occ, channels=channels, late=late, note=note
            )
            if claim is Claim.REFUSED:
                return
            fire_occurrence_task.delay(occ.id, late, note, channels)
            self.fired.append(occ.id)
            log.info(
                "event=enqueued occurrence=%s channels=%s claim=%s late=%s delay_s=%.3f",
                occ.id,
                shown,
                claim.value,
                late,
                (started - occ.instant).total_seconds(),
            )
            return
        report = fire(
            self.ctx,
            occ,
            channels=channels,
            late=late,
            note=note,
            processes=settings.sender_processes(),
        )
        if report.claim is not Claim.REFUSED:
            self.fired.append(occ.id)
        r = report.result
        alerts.failure_rate(self.ctx, occ.id, occ.campaign_id, r.failed, r.sent + r.failed)
        log.info(
            "event=fired occurrence=%s channels=%s claim=%s late=%s state=%s sent=%d failed=%d "
            "skipped=%d delay_s=%.3f",
            occ.id,
            shown,
            report.claim.value,
            late,
            report.state,
            r.sent,
            r.failed,
            r.skipped,
            (started - occ.instant).total_seconds(),
        )


def _has_local_steps(config: Config) -> bool:
    return any(s.deliver == "local" for c in config.campaigns.values() for s in c.steps.values())


def _reason(found: tuple[Diagnostic, ...]) -> str:
    first = found[0].format().split("\n")[0]
    return first + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")


def describe_next(project: Project, now: dt.datetime, limit: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "id": o.id,
            "local": local_time(o.local),
            "timezone": o.timezone,
            "channels": list(o.channels),
        }
        for o in calendar.next_occurrences(project.config, now, limit=limit)[:limit]
    ]
