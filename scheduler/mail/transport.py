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

import queue
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import parse_qsl, unquote

from scheduler.config.secrets import is_reference, redact, resolve
from scheduler.errors import PermanentSendError
from scheduler.mail.ratelimit import RateLimiter

Status = Literal["sent", "transient", "permanent", "bounced", "unavailable"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one recipient, ready to send."""

    key: int  # the delivery id in the ledger
    envelope_from: str  # "" for the null sender
    recipient: str
    data: bytes  # complete RFC 5322 message, CRLF or LF line endings


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message.

    `bounced` means the server refused the recipient's address itself (5.1.x on RCPT): the
    caller marks the address bounced. `transient` is worth retrying later; `permanent` is not.
    `unavailable` says nothing about the message: the server could not be reached or is
    closing the connection (refused, timed out, TLS failed, `421`), and nothing was sent; the
    caller waits for the server, without counting it against the message.
    """

    key: int
    status: Status
    response: str  # the server's reply, or what went wrong on the way to it


class Transport(Protocol):
    """Sends messages one at a time; not thread-safe (give each thread its own)."""

    def send(self, message: Outgoing) -> Outcome:
        """Send one message and classify the result; never raises for a per-message failure."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent)."""
        ...


# --- URLs ----------------------------------------------------------------------------------

StartTls = Literal["auto", "require", "off"]


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """An SMTP server as a URL names it, secrets resolved."""

    scheme: Literal["smtp", "smtps"]
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: StartTls = "auto"
    # How to show the user: a token used as user name shows as its `${NAME}` reference.
    user_label: str | None = None

    def display(self) -> str:
        """The URL with the password replaced by `***`: safe for logs and error messages."""
        userinfo = ""
        if self.username is not None:
            label = self.user_label if self.user_label is not None else self.username
            userinfo = label + (":***" if self.password is not None else "") + "@"
        query = f"?starttls={self.starttls}" if self.starttls != "auto" else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{userinfo}{host}:{self.port}{query}"

    def __repr__(self) -> str:
        return f"SmtpEndpoint({self.display()!r})"


_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


def parse_smtp_url(url: str, env: Mapping[str, str] | None = None) -> SmtpEndpoint:
    """Read an `smtp://` or `smtps://` URL, resolving `${ENV}` references in its parts.

    Raises PermanentSendError (without the password) when the URL cannot be read, and
    SecretError when a referenced variable is unset.
    """
    whole = is_reference(url)
    text = resolve(url, env) if whole else url

    def value(part: str) -> str:
        # Literal parts may be percent-encoded; values from the environment are used verbatim.
        decoded = unquote(part)
        return decoded if whole else resolve(decoded, env)

    scheme, sep, rest = text.partition("://")
    # The password may hold any character (it can come from the environment): the host
    # starts after the last "@".
    userinfo, at, hostpart = rest.rpartition("@")
    hostpart, _, query = hostpart.partition("?")
    hostpart = hostpart.rstrip("/")
    shown = f"{scheme}://{userinfo.partition(':')[0] + ':***@' if at else ''}{hostpart}"
    if not sep or scheme not in _DEFAULT_PORTS or not hostpart or "/" in hostpart:
        raise PermanentSendError(
            f"cannot read the mail server URL {shown!r}; write 'smtp://host:587' (STARTTLS), "
            "'smtps://host:465' (TLS), optionally with 'user:${SMTP_PASSWORD}@' before the host"
        )
    if hostpart.startswith("["):  # IPv6 literal
        host, _, port_text = hostpart[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostpart.partition(":")
    host = value(host)
    port_text = value(port_text)
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise PermanentSendError(f"the port in {shown!r} must be a number from 1 to 65535")
    username = password = user_label = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = value(user_text)
        user_label = username if whole else redact(unquote(user_text))
        password = value(password_text) if colon else None
    starttls: StartTls = "auto"
    for name, setting in parse_qsl(query, keep_blank_values=True):
        if name == "starttls" and setting in ("auto", "require", "off") and scheme == "smtp":
            starttls = setting  # type: ignore[assignment]  # checked just above
        else:
            raise PermanentSendError(
                f"unknown setting {name}={setting!r} in {shown!r}; smtp:// URLs take "
                "?starttls=auto, ?starttls=require or ?starttls=off"
            )
    return SmtpEndpoint(
        scheme=scheme,  # type: ignore[arg-type]  # checked against _DEFAULT_PORTS
        host=host,
        port=int(port_text) if port_text else _DEFAULT_PORTS[scheme],
        username=username,
        user_label=user_label,
        password=password,
        starttls=starttls,
    )


def file_directory(url: str) -> str:
    """The directory of a `file:DIR` URL (`file:outbox`, `file://outbox`, `file:///abs`)."""
    directory = url.removeprefix("file:").removeprefix("//")
    if not directory.strip("/"):
        raise PermanentSendError("write a directory after 'file:', e.g. 'file:outbox'")
    return directory


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
    from scheduler.mail.filebox import FileTransport
    from scheduler.mail.smtp import SmtpTransport

    whole = is_reference(url)
    text = resolve(url, env) if whole else url
    if text.startswith("file:"):
        directory = file_directory(text)
        return FileTransport(directory if whole else resolve(directory, env))
    return SmtpTransport(parse_smtp_url(url, env), timeout=timeout, ssl_context=ssl_context)


# --- parallel sending ----------------------------------------------------------------------

_STOP = object()


class TransportPool:
    """Send through `connections` transports in parallel threads, rate-limited if asked.

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
        while True:
            item = todo.get()
            if not isinstance(item, Outgoing):
                return
            if self._limiter is not None:
                try:
                    wait = self._limiter.reserve()
                except Exception as e:  # e.g. Redis is down: do not send unthrottled
                    done.put(Outcome(item.key, "unavailable", f"rate limiter unavailable: {e}"))
                    continue
                if wait > 0 and stop.wait(wait):
                    return
            if stop.is_set():
                return
            try:
                outcome = transport.send(item)
            except Exception as e:  # a bug in a transport must not hang the caller's loop
                outcome = Outcome(item.key, "transient", f"internal error while sending: {e!r}")
            done.put(outcome)

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
