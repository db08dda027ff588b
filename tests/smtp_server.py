"""A real SMTP server for tests (aiosmtpd on 127.0.0.1), recording and misbehaving on request.

    from smtp_server import SmtpTestServer, smtp_server  # noqa: F401  (fixture)

    def test_x(smtp_server: SmtpTestServer) -> None:
        smtp_server.reject_rcpt["nobody@example.org"] = "550 5.1.1 No such user"
        smtp_server.fail_next_data("451 4.3.0 Try again later", times=3)
        smtp_server.drop_next_data()          # close the connection instead of answering DATA
        ... send to smtp_server.url ...
        assert smtp_server.count_by_recipient()["ana@example.org"] == 1

For other setups use the class directly: `with SmtpTestServer(credentials={"u": "pw"}) as s:`,
`SmtpTestServer(tls="starttls")` or `tls="implicit"` (a throwaway certificate for 127.0.0.1;
trust it with `s.client_ssl_context()`), `pipelining=False` for a server without PIPELINING,
`smtputf8=True` for one that offers SMTPUTF8. `stop()` then `start(port)` is an outage.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server accepted it (data with CRLF endings, dots unstuffed)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: Any = None
    received_at: float = field(default_factory=time.time)  # when the server accepted it

    @functools.cached_property
    def message_id(self) -> str | None:
        headers = self.data.split(b"\r\n\r\n", 1)[0]
        m = _MESSAGE_ID.search(headers)
        return m[1].decode() if m else None


@dataclass
class _Script:
    rcpt: deque[str] = field(default_factory=deque)
    data: deque[str] = field(default_factory=deque)
    drops: int = 0


class SmtpTestServer:
    """An aiosmtpd server on a free port of 127.0.0.1; `start()`/`stop()` or `with`."""

    def __init__(
        self,
        *,
        reject_rcpt: Mapping[str, str] | None = None,
        temp_fail_rcpt: int = 0,
        temp_fail_data: int = 0,
        drop_data: int = 0,
        credentials: Mapping[str, str] | None = None,
        pipelining: bool = True,
        tls: Literal["starttls", "implicit"] | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.reject_rcpt: dict[str, str] = dict(reject_rcpt or {})
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.credentials = dict(credentials) if credentials is not None else None
        self.tls = tls
        self.messages: list[ReceivedMessage] = []
        self.dropped: list[ReceivedMessage] = []  # received in full, connection then dropped
        self.connections = 0
        self.logins: list[tuple[str, bool]] = []  # (login, success)
        self._open: set[int] = set()
        self._lock = threading.Lock()
        self._script = _Script()
        self._rcpt_of: dict[str, deque[str]] = {}  # address -> replies before it is accepted
        self.fail_next_rcpt("450 4.2.1 Mailbox busy, try again later", times=temp_fail_rcpt)
        self.fail_next_data("451 4.3.0 Try again later", times=temp_fail_data)
        self.drop_next_data(times=drop_data)
        self._controller: Controller | None = None
        self.port = 0

    # --- scripting ---------------------------------------------------------------------------

    def fail_next_rcpt(self, reply: str, *, times: int = 1) -> None:
        """Answer `reply` to the next `times` RCPT commands (after `reject_rcpt`)."""
        with self._lock:
            self._script.rcpt.extend([reply] * times)

    def fail_rcpt_of(self, address: str, reply: str, *, times: int) -> None:
        """Answer `reply` to the next `times` RCPT commands for `address`, then accept it."""
        with self._lock:
            self._rcpt_of.setdefault(address, deque()).extend([reply] * times)

    def fail_next_data(self, reply: str, *, times: int = 1) -> None:
        """Answer `reply` instead of 250 after the data of the next `times` messages."""
        with self._lock:
            self._script.data.extend([reply] * times)

    def drop_next_data(self, *, times: int = 1) -> None:
        """For the next `times` messages, read the data, then close without a reply."""
        with self._lock:
            self._script.drops += times

    # --- what happened -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def wait_all_closed(self, timeout: float = 2.0) -> bool:
        """Wait until no client is connected (closing is asynchronous); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._open:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def count_by_recipient(self) -> Counter[str]:
        return Counter(r for m in self.messages for r in m.rcpt_tos)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's throwaway certificate."""
        context = ssl.create_default_context(cafile=str(_certificate()[0]))
        return context

    # --- running -----------------------------------------------------------------------------

    def start(self, port: int | None = None) -> SmtpTestServer:
        """Listen on `port` (e.g. the one of a server stopped to simulate an outage), or a
        free one. What earlier runs received stays in `messages`."""
        self.port = port or _free_port()
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": self.smtputf8}
        if self.credentials is not None:
            kwargs.update(
                authenticator=self._authenticate, auth_require_tls=False, auth_required=True
            )
        if self.tls == "starttls":
            kwargs["tls_context"] = _server_ssl_context()
        elif self.tls == "implicit":
            kwargs["ssl_context"] = _server_ssl_context()
        self._controller = _Controller(self, hostname=HOST, port=self.port, **kwargs)
        self._controller.start()
        # The controller connects once to check it is up; that one does not count.
        self.connections = 0
        self._open.clear()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- aiosmtpd hooks (run in the server's thread) ----------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        ok = self.credentials.get(login) == password
        self.logins.append((login, ok))
        return AuthResult(success=ok, handled=False)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must do this itself
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self._lock:
            reply = self.reject_rcpt.get(address)
            if reply is None and self._rcpt_of.get(address):
                reply = self._rcpt_of[address].popleft()
            if reply is None and self._script.rcpt:
                reply = self._script.rcpt.popleft()
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(raw),
            peer=session.peer,
        )
        with self._lock:
            drop = self._script.drops > 0
            if drop:
                self._script.drops -= 1
            reply = None if drop or not self._script.data else self._script.data.popleft()
        if drop:
            self.dropped.append(message)
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            await asyncio.sleep(3600)  # cancelled when aiosmtpd sees the connection gone
        if reply is not None:
            return reply
        self.messages.append(message)
        return f"250 2.0.0 Ok: queued as {len(self.messages):X}"

    def _connected(self, protocol: SMTP) -> None:
        self.connections += 1
        self._open.add(id(protocol))

    def _disconnected(self, protocol: SMTP) -> None:
        self._open.discard(id(protocol))


class _CountingSMTP(SMTP):
    def __init__(self, owner: SmtpTestServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the second call that STARTTLS makes
            self._owner._connected(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._disconnected(self)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, owner: SmtpTestServer, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self._owner = owner

    def factory(self) -> SMTP:
        return _CountingSMTP(self._owner, self.handler, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@functools.cache
def _certificate() -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made once per test run."""
    directory = Path(tempfile.mkdtemp(prefix="smtp-test-cert-"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _server_ssl_context() -> ssl.SSLContext:
    cert, key = _certificate()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A running SmtpTestServer with no scripted failures, stopped after the test."""
    with SmtpTestServer() as server:
        yield server
