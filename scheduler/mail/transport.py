"""How ready-made messages leave: the `Transport` contract, `open_transport`, and a pool.

A transport takes one complete message at a time and says what happened to it as an `Outcome`;
it never raises for a failure that concerns one message, so a batch keeps going and the caller
records every result. `TransportPool` runs several transports in parallel threads.

URLs understood by `open_transport` (any part may be a `${ENV_VAR}` reference, or the whole URL):

- `smtp://[user:password@]host[:port][?starttls=auto|require|off]`, port 25 by default.
  `starttls=auto` (the default) upgrades with STARTTLS when the server offers it;
  `require` refuses to send over a connection the server will not encrypt; `off` never
  upgrades. With `auto`, a password is only sent unencrypted to a loopback address: set
  `starttls=off` to allow it elsewhere on purpose.
- `smtps://[user:password@]host[:port]`: TLS from the first byte, port 465 by default.
- `file:DIR` (also `file://DIR`, `file:///abs/DIR`): one `.eml` file per message.

User and password may be percent-encoded (`news%40example.org`); values taken from the
environment are used as they are. The password never appears in logs, errors or outcomes.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

from scheduler.config.secrets import is_reference, resolve
from scheduler.mail.envelope import Outcome, Outgoing, Status, Transport
from scheduler.mail.filebox import FileTransport
from scheduler.mail.multiplex import send_multiplexed
from scheduler.mail.ratelimit import RateLimiter
from scheduler.mail.smtp import SmtpTransport
from scheduler.mail.urls import SmtpEndpoint, StartTls, file_directory, parse_smtp_url

log = logging.getLogger(__name__)

# Names callers have always taken from here; they live in the small modules above.
__all__ = [
    "Outcome",
    "Outgoing",
    "SmtpEndpoint",
    "StartTls",
    "Status",
    "Transport",
    "TransportPool",
    "file_directory",
    "open_transport",
    "parse_smtp_url",
]


def open_transport(
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """A transport for `url` (see the module docstring). Nothing connects until the first send.

    `ssl_context` replaces the default (system CAs, hostname checked), e.g. for a private CA.
    """
    whole = is_reference(url)
    text = resolve(url, env) if whole else url
    if text.startswith("file:"):
        directory = file_directory(text)
        return FileTransport(directory if whole else resolve(directory, env))
    return SmtpTransport(parse_smtp_url(url, env), timeout=timeout, ssl_context=ssl_context)


# --- parallel sending ----------------------------------------------------------------------

_STOP = object()


class TransportPool:
    """Send through `connections` transports in parallel, rate-limited if asked: SMTP
    transports without a rate limit from the calling thread (`multiplex.py`), others (and
    rate-limited ones, whose waits would stall every connection of a single thread) each in
    a thread of its own.

    Transports are made by `factory` when first needed and kept between `send_all` calls,
    so connections outlive a batch; `close()` releases them. Batches may run at the same
    time from several threads, each with its own `connections` transports.
    """

    def __init__(
        self,
        factory: Callable[[], Transport],
        connections: int,
        limiter: RateLimiter | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("a pool needs at least one connection")
        self._factory = factory
        self._connections = connections
        self._limiter = limiter
        self._idle: list[Transport] = []
        self._idle_lock = threading.Lock()  # batches may run from several threads
        self._closed = False

    def send_all(self, messages: Iterable[Outgoing]) -> Iterator[Outcome]:
        """Yield one outcome per message, in completion order.

        `messages` is consumed lazily, in the caller's thread, at most a few messages per
        connection ahead of the outcomes. Leaving the loop early (or closing the generator)
        stops the workers before returning; a message a worker had already started may still
        have been sent, and its outcome is then not reported.
        """
        if self._closed:
            raise RuntimeError("this TransportPool is closed")
        with self._idle_lock:
            transports = self._idle[-self._connections :]
            del self._idle[-self._connections :]
        transports += [self._factory() for _ in range(self._connections - len(transports))]
        smtp = [t for t in transports if isinstance(t, SmtpTransport)]
        if self._limiter is None and len(smtp) == len(transports):
            # SMTP without a rate limit: every connection from this one thread (multiplex.py).
            try:
                yield from send_multiplexed(smtp, iter(messages))
            finally:
                with self._idle_lock:
                    self._idle.extend(transports)
            return
        todo: queue.SimpleQueue[object] = queue.SimpleQueue()
        done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        stop = threading.Event()
        workers = [
            threading.Thread(
                target=self._work,
                args=(transport, todo, done, stop),
                name=f"mail-pool-{n}",
                daemon=True,
            )
            for n, transport in enumerate(transports)
        ]
        for worker in workers:
            worker.start()
        capacity = 4 * self._connections
        pending = iter(messages)
        exhausted = False
        in_flight = 0
        try:
            while True:
                while not exhausted and in_flight < capacity:
                    try:
                        todo.put(next(pending))
                    except StopIteration:
                        exhausted = True
                        break
                    in_flight += 1
                if not in_flight:
                    return
                outcome = done.get()
                in_flight -= 1
                yield outcome
        finally:
            stop.set()
            while True:  # what no worker has taken yet is simply not sent
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
            for _ in workers:
                todo.put(_STOP)
            for worker in workers:
                worker.join()
            with self._idle_lock:
                self._idle.extend(transports)

    def _work(
        self,
        transport: Transport,
        todo: queue.SimpleQueue[object],
        done: queue.SimpleQueue[Outcome],
        stop: threading.Event,
    ) -> None:
        stream = getattr(transport, "send_stream", None)
        finished = False

        def take(block: bool) -> Outgoing | None:
            nonlocal finished
            if finished or stop.is_set():
                return None
            try:
                item = todo.get() if block else todo.get_nowait()
            except queue.Empty:
                return None
            if not isinstance(item, Outgoing):
                finished = True
                return None
            if self._limiter is not None:
                try:
                    wait = self._limiter.reserve()
                except Exception as e:  # e.g. Redis is down: do not send unthrottled
                    done.put(Outcome(item.key, "unavailable", f"rate limiter unavailable: {e}"))
                    return take(block)
                if wait > 0 and stop.wait(wait):
                    finished = True
                    return None
            if stop.is_set():
                return None
            in_flight[item.key] = item
            return item

        def emit(outcome: Outcome) -> None:
            in_flight.pop(outcome.key, None)
            done.put(outcome)

        in_flight: dict[int, Outgoing] = {}
        if stream is not None:
            # Overlapping transactions (see SmtpTransport.send_stream); it ends when `take`
            # has nothing more and nothing is in flight.
            while not finished and not stop.is_set():
                try:
                    stream(take, emit)
                except Exception as e:  # a bug must not hang the caller's loop
                    log.exception("transport failed")
                    transport.close()
                    for key in list(in_flight):
                        emit(Outcome(key, "transient", f"internal error while sending: {e!r}"))
            return
        while True:
            item = take(True)
            if item is None:
                return
            try:
                outcome = transport.send(item)
            except Exception as e:  # a bug in a transport must not hang the caller's loop
                outcome = Outcome(item.key, "transient", f"internal error while sending: {e!r}")
            emit(outcome)

    def close(self) -> None:
        """Close every transport the pool holds (idempotent)."""
        self._closed = True
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for transport in idle:
            transport.close()

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
