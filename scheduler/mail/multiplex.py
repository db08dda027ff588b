"""Several SMTP connections driven from one thread: whichever server reply arrives first is
handled first, and the next message is composed the moment a connection is ready for it.

With one thread per connection (`TransportPool`'s general path) a sender that composes while
its connections wait fights them for the interpreter lock: a reply that has arrived waits up
to the lock's switch interval (5 ms) for its thread to run, and every message crosses two
queues. Here each connection's dialogue is `SmtpTransport.stream_steps`, a generator that
yields whenever it needs the server's next reply; this loop waits on all the sockets at once
(`select`), reads whichever has data, and hands each complete reply to its connection. The
rules of a transaction (pipelining, 421, a lost connection, the retry on a fresh one) are the
transport's alone, the same code `send_stream` runs on one connection.

Writes stay blocking (a few kilobytes into a socket buffer that is almost always free);
opening a connection (greeting, STARTTLS, AUTH) blocks the loop while it happens, as it is
rare and every connection goes to the same server. A connection whose server stays silent
for the transport's timeout gets a timeout error, as a blocking read would.
"""

from __future__ import annotations

import logging
import select
import smtplib
import time
from collections import deque
from collections.abc import Iterator, Sequence

from scheduler.mail.envelope import Outcome, Outgoing
from scheduler.mail.smtp import SmtpTransport, Steps

log = logging.getLogger(__name__)


class _Connection:
    """One transport's dialogue in the loop, and the messages it has taken and not answered."""

    def __init__(self, transport: SmtpTransport, feed: _Feed) -> None:
        self.transport = transport
        self.feed = feed
        self.in_flight: dict[int, Outgoing] = {}
        self.steps: Steps[None] = transport.stream_steps(self.take, self.emit)
        self.started = False
        self.finished = False
        self.deadline = 0.0

    def take(self, block: bool) -> Outgoing | None:
        message = self.feed.next()
        if message is not None:
            self.in_flight[message.key] = message
        return message

    def emit(self, outcome: Outcome) -> None:
        self.in_flight.pop(outcome.key, None)
        self.feed.outcomes.append(outcome)

    def advance(self, error: Exception | None = None) -> bool:
        """Run the dialogue as far as the replies received allow. True: it waits for the
        server; False: it has finished (nothing more to send, nothing in flight)."""
        if self.finished:
            return False
        while True:
            reply = None
            if error is None and self.started:
                try:
                    reply = self.transport.buffered_reply()
                except (smtplib.SMTPException, OSError) as e:
                    error = e
                else:
                    if reply is None:
                        self.deadline = time.monotonic() + self.transport.timeout
                        return True
            self.started = True
            try:
                if error is not None:
                    thrown, error = error, None
                    self.steps.throw(thrown)
                else:
                    self.steps.send(reply)  # type: ignore[arg-type]  # None starts it
            except StopIteration:
                self.finished = True
                return False
            except _CallerFailed:
                # Its dialogue ended mid-transaction: drop the connection (no QUIT, which a
                # server waiting for data would take as data; it discards the unfinished one).
                self.finished = True
                self.transport.abort()
                raise
            except Exception as e:  # a bug must not hang the batch: as TransportPool does
                log.exception("transport failed")
                self.transport.close()
                for key in list(self.in_flight):
                    self.emit(Outcome(key, "transient", f"internal error while sending: {e!r}"))
                self.steps = self.transport.stream_steps(self.take, self.emit)
                self.started = False

    def finish_blocking(self) -> None:
        """Wait on this connection alone until its dialogue ends (used when stopping)."""
        waiting = self.advance()
        while waiting:
            try:
                self.transport.receive()
            except (smtplib.SMTPException, OSError) as e:
                waiting = self.advance(e)
            else:
                waiting = self.advance()


class _CallerFailed(Exception):
    """The caller's message iterator raised: not a transport's fault, so it is not handled
    as one (the error leaves `send_multiplexed`, as it leaves a loop over the messages)."""


class _Feed:
    """The caller's messages, taken one at a time as connections ask, and the outcomes."""

    def __init__(self, messages: Iterator[Outgoing]) -> None:
        self.messages = messages
        self.outcomes: deque[Outcome] = deque()
        self.stopping = False

    def next(self) -> Outgoing | None:
        if self.stopping:
            return None
        try:
            message = next(self.messages, None)
        except Exception as e:
            self.stopping = True
            raise _CallerFailed() from e
        if message is None:
            self.stopping = True
        return message


def send_multiplexed(
    transports: Sequence[SmtpTransport], messages: Iterator[Outgoing]
) -> Iterator[Outcome]:
    """Yield one outcome per message, in completion order (`TransportPool.send_all`'s
    contract). Leaving the loop early stops taking messages; those in flight are finished
    and their outcomes not reported."""
    feed = _Feed(messages)
    connections = [_Connection(t, feed) for t in transports]
    try:
        try:
            waiting = [c for c in connections if c.advance()]
            while True:
                while feed.outcomes:
                    yield feed.outcomes.popleft()
                if not waiting:
                    return
                waiting = _wait_and_advance(waiting)
        except _CallerFailed as failed:
            assert failed.__cause__ is not None
            raise failed.__cause__ from None
    finally:
        feed.stopping = True
        for connection in connections:
            connection.finish_blocking()  # takes nothing more: `stopping` is set


def _wait_and_advance(waiting: list[_Connection]) -> list[_Connection]:
    """Wait until some connection can read (or times out), advance those; the ones still
    waiting afterwards."""
    by_socket = {}
    ready: list[_Connection] = []
    for c in waiting:
        sock = c.transport.socket
        if sock is None or c.transport.buffered():
            ready.append(c)  # closed under it (reading says so), or TLS holds data already
        else:
            by_socket[sock] = c
    timed_out: list[_Connection] = []
    if not ready:
        now = time.monotonic()
        timeout = max(0.0, min(c.deadline for c in by_socket.values()) - now)
        readable, _, _ = select.select(list(by_socket), [], [], timeout)
        ready = [by_socket[s] for s in readable]
        if not ready:
            now = time.monotonic()
            timed_out = [c for c in by_socket.values() if c.deadline <= now]
    still = [c for c in waiting if c not in ready and c not in timed_out]
    for c in ready:
        try:
            c.transport.receive()
        except (smtplib.SMTPException, OSError) as e:
            if c.advance(e):
                still.append(c)
        else:
            if c.advance():
                still.append(c)
    for c in timed_out:
        if c.advance(TimeoutError("timed out")):
            still.append(c)
    return still
