"""One retry loop for every channel: an email batch and a post wait, count and give up alike.

A sender hands the loop a `send` function that tries its deliveries once and says, in a
`Round`, which of them failed for now (`again`: the message's own transient failure, e.g. a
4xx reply or a 429) and which could not be tried because the server is unreachable
(`waiting`). The loop then

- waits out the channel's breaker for an unreachable server (its deliveries' attempts do not
  move; they fail only when the outage has lasted the channel's `retry_window`), or
- backs off for a transient failure (`ctx.retry`, or the server's `Retry-After` when longer)
  and counts one more attempt: a short wait here, holding the deliveries' leases, a longer
  one in the ledger (`deferral.py`: back to `pending` with `next_attempt_at`, claimed again
  by whoever sends the occurrence after that). They fail only once the channel's
  `retry_window` has passed since their first transient failure, never on a count,

and tries again. What it gives up on goes to
the sender's `give_up` with the reason (`Ending`), so each channel words its own ledger rows.
A process that is stopping leaves what is left pending for its next start.

Everything here is per round, not per message: a batch of a thousand messages costs the
loop a handful of ledger writes per retry.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from scheduler.delivery import deferral, ledger
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.deferral import Deferral
from scheduler.delivery.ledger import ClaimedDelivery
from scheduler.store.schema import utcnow

log = logging.getLogger(__name__)


class Ending(enum.Enum):
    """Why the loop stopped trying a delivery."""

    EXPIRED = "expired"  # its own transient failures lasted the whole retry window
    DEFERRED = "deferred"  # waits in the ledger for its next attempt (already recorded)
    WINDOW = "window"  # the server was unreachable for the whole retry window
    CANCELLED = "cancelled"  # cancelled while retrying or while the server was unreachable
    STOPPING = "stopping"  # the process is stopping: leave it pending


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The end of the road for some deliveries; `error` prefixes each one's own reply."""

    ending: Ending
    error: str
    unreachable: bool = False  # the server was down (the reply is its reason)

    @property
    def pending(self) -> bool:
        return self.ending is Ending.STOPPING

    @property
    def deferred(self) -> bool:
        """Handed back to the ledger with its next attempt: nothing more to record."""
        return self.ending is Ending.DEFERRED


@dataclass
class Round:
    """What one go at sending left to do."""

    # Failed for now, each with the server's reply: counted as another attempt.
    again: list[tuple[ClaimedDelivery, str]] = field(default_factory=list)
    # Not sent because the server could not be reached: not the message's doing.
    waiting: list[ClaimedDelivery] = field(default_factory=list)
    reason: str = ""  # why the server is unreachable (its reply, or the error)
    retry_after: float | None = None  # seconds the server asked us to wait, if it said


Send = Callable[[list[ClaimedDelivery]], Round]
GiveUpTo = Callable[[list[tuple[ClaimedDelivery, str]], GiveUp], None]


@dataclass
class Attempts:
    """The retry loop of one send (an email batch, a post) on one channel."""

    ctx: DeliveryContext
    occurrence_id: str
    channel: str
    attempt: int  # the attempt the first round is
    server: str = "server"  # what messages call the far end: "server", "mastodon"
    on_wait: Callable[[], None] | None = None  # after each wait for the server (progress)
    retried: int = 0  # deliveries tried again after a transient failure
    waited: int = 0  # waits for an unreachable server
    deferred: int = 0  # deliveries handed back to the ledger for a later attempt
    tries_here: int = 0  # waits for a transient failure spent in this loop
    # When each delivery first failed transiently in this loop (before it: in the ledger).
    first_failed: dict[int, dt.datetime] = field(default_factory=dict)

    def run(self, todo: list[ClaimedDelivery], send: Send, give_up: GiveUpTo) -> None:
        """Send `todo` until every delivery is sent, failed for good, or given up."""
        while todo:
            round_ = send(todo)
            again = round_.again
            if round_.waiting:
                ending = self._wait_for_server(round_.waiting, round_.reason, round_.retry_after)
                if ending is None:
                    self.waited += 1
                    # The unreachable ones again, plus the failed ones (which do count).
                    if again:
                        ledger.count_attempt(self.ctx.engine, [d.id for d, _ in again])
                        self.retried += len(again)
                    todo = sorted(round_.waiting + [d for d, _ in again], key=lambda d: d.id)
                    continue
                give_up([(d, round_.reason) for d in round_.waiting], ending)
            if not again:
                return
            again = self._back_off(again, round_.retry_after, give_up)
            if not again:
                return
            todo = [d for d, _ in again]

    def _back_off(
        self,
        again: list[tuple[ClaimedDelivery, str]],
        retry_after: float | None,
        give_up: GiveUpTo,
    ) -> list[tuple[ClaimedDelivery, str]]:
        """After the deliveries' own transient failures: give up on those whose retry window
        is over (or whose occurrence was cancelled, or when stopping), hand the others to the
        ledger when their wait is long (see deferral.py), or wait here and count the
        attempt; returns the ones to try again now."""
        ctx = self.ctx
        if ctx.stopping:
            give_up(again, GiveUp(Ending.STOPPING, "stopping"))
            return []
        if ledger.is_cancelled(ctx.engine, self.occurrence_id):
            give_up(again, GiveUp(Ending.CANCELLED, "cancelled after a temporary failure"))
            return []
        now = utcnow()
        delay = max(ctx.retry.delay(self.attempt), retry_after or 0.0)
        window = ctx.retry_window(self.channel)
        expired: list[tuple[ClaimedDelivery, str]] = []
        later: list[tuple[ClaimedDelivery, str]] = []
        deferrals: list[Deferral] = []
        waits: list[float] = []
        for d, reply in again:
            first = d.first_failed_at or self.first_failed.setdefault(d.id, now)
            wait = deferral.next_wait(first, now, window, delay)
            if wait is None:
                expired.append((d, reply))
                continue
            later.append((d, reply))
            waits.append(wait)
            deferrals.append(Deferral(d.id, now + dt.timedelta(seconds=wait), first, reply))
        if expired:
            reason = deferral.window_reason(ctx.retry_window_text(self.channel))
            give_up(expired, GiveUp(Ending.EXPIRED, reason))
        if not later:
            return []
        delay = min(waits)
        if not ctx.retry.holds(self.tries_here, delay):
            ledger.defer(ctx.engine, deferrals)
            self.deferred += len(later)
            log.info(
                "event=deferred occurrence=%s channel=%s count=%d next_attempt=%s reason=%r",
                self.occurrence_id,
                self.channel,
                len(later),
                min(d.retry_at for d in deferrals).isoformat(timespec="seconds"),
                later[0][1],
            )
            give_up(later, GiveUp(Ending.DEFERRED, "deferred after a temporary failure"))
            return []
        ids = [d.id for d, _ in later]
        log.info(
            "%s %s: %d transient failures, retrying in %.1fs (attempt %d)",
            self.occurrence_id,
            self.channel,
            len(ids),
            delay,
            self.attempt + 1,
        )
        # Held through the wait: the lease must outlast it, or another sender takes over.
        ledger.renew_lease(ctx.engine, ids, lease=ctx.lease + dt.timedelta(seconds=delay))
        ctx.sleep(delay)
        self.attempt += 1
        self.tries_here += 1
        self.retried += len(ids)
        ledger.count_attempt(ctx.engine, ids)
        ledger.renew_lease(ctx.engine, ids, lease=ctx.lease)
        return later

    def _wait_for_server(
        self, held: list[ClaimedDelivery], reason: str, retry_after: float | None
    ) -> GiveUp | None:
        """Wait out the channel's backoff holding `held` (their leases renewed); or say why
        the waiting ends instead: the retry window is over, the occurrence was cancelled,
        or the process is stopping."""
        ctx = self.ctx
        breaker = ctx.breaker(self.channel)
        breaker.failure(reason)
        cancelled = ledger.is_cancelled(ctx.engine, self.occurrence_id)
        if not (breaker.expired() or ctx.stopping or cancelled):
            delay = max(breaker.backoff(), retry_after or 0.0)
            log.warning(
                "%s %s: %s unreachable for %.0fs (%s); %d waiting, next try in %.1fs",
                self.occurrence_id,
                self.channel,
                self.server,
                breaker.down_for(),
                reason,
                len(held),
                delay,
            )
            if self._hold([d.id for d in held], delay):
                if self.on_wait is not None:
                    self.on_wait()
                return None
        the_server = "the server" if self.server == "server" else self.server
        if ctx.stopping and not breaker.expired():
            return GiveUp(Ending.STOPPING, f"stopping while {the_server} was unreachable", True)
        if breaker.expired():
            window = ctx.retry_window_text(self.channel)
            error = f"{self.server} unreachable for the whole retry window ({window})"
            return GiveUp(Ending.WINDOW, error, True)
        return GiveUp(Ending.CANCELLED, f"cancelled while {the_server} was unreachable", True)

    def _hold(self, ids: list[int], delay: float) -> bool:
        """Sleep `delay` in slices shorter than the lease, renewing it, so nobody takes these
        over while this sender is alive and waiting. False when the process began stopping."""
        ctx = self.ctx
        slice_seconds = max(0.05, ctx.lease.total_seconds() / 3)
        remaining = delay
        while remaining > 0:
            step = min(slice_seconds, remaining)
            ctx.sleep(step)
            remaining -= step
            ledger.renew_lease(ctx.engine, ids, lease=ctx.lease)
            if ctx.stopping:
                return False
        return True
