"""`SmtpTransport`: one reused SMTP connection, each reply classified.

Speed comes from doing nothing per message beyond the SMTP dialogue: one connection (EHLO,
STARTTLS and AUTH once), MAIL, RCPT and DATA sent in one packet when the server offers
PIPELINING (RFC 2920), and the message bytes written as they are after line-ending and dot
fixes.

Classification: 2xx sent; 4xx at any stage, and a lost connection, transient; 5.1.x on RCPT
(or a bare 550/551/553 that says the user is unknown) bounced; any other 5xx permanent.
Failures while opening the session (refused connection, TLS, AUTH) apply to the message that
needed the connection, classified the same way: a rejected password, a certificate that
does not verify, or `starttls=require` against a server without STARTTLS are permanent.
A server that cannot be reached (refused, timed out, TLS handshake failed, a 4xx or `421`
greeting, the connection closed before a message was sent) is `unavailable`: no fault of the
message, which the caller keeps for when the server is back.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Generator
from typing import TypeVar

from scheduler.mail.envelope import Outcome, Outgoing, Status
from scheduler.mail.urls import SmtpEndpoint, parse_smtp_url

_ENHANCED = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
# Sender-side address problems (RFC 3463 X.1.7, X.1.8) are not the recipient's fault.
_NOT_RECIPIENT = {b"7", b"8"}
_UNKNOWN_USER = re.compile(
    rb"user unknown|unknown user|no such (?:user|mailbox|recipient|address)"
    rb"|(?:user|mailbox|recipient|address) (?:does not exist|doesn't exist|not found|unknown)"
    rb"|unknown (?:recipient|mailbox)|invalid (?:recipient|mailbox)|unrouteable address",
    re.IGNORECASE,
)
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20<>\x7f]")
_EXPECTED = {"RSET": (250,), "MAIL": (250,), "RCPT": (250, 251), "DATA": (354,)}
_MAXLINE = 8192  # smtplib's limit on a reply line
_LOST_DURING = "connection lost during the message"


T = TypeVar("T")
Reply = tuple[int, bytes]
# A stretch of one connection's dialogue: yields each time it needs the server's next reply,
# which whoever drives it sends in (or throws in the error reading it raised).
Steps = Generator[None, Reply, T]


def drive(steps: Steps[T], read: Callable[[], Reply]) -> T:
    """Run `steps` to the end, answering each of its waits with `read()`."""
    reply: Reply | None = None
    error: Exception | None = None
    while True:
        try:
            if error is not None:
                thrown, error = error, None
                steps.throw(thrown)
            else:
                steps.send(reply)  # type: ignore[arg-type]  # None starts it
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            reply = read()
        except (smtplib.SMTPException, OSError) as e:
            error = e


def classify(stage: str, code: int, text: bytes) -> Status:
    """The status for the server's reply `code text` to `stage` (MAIL, RCPT, DATA, ...)."""
    if 200 <= code < 300:
        return "sent"
    if 500 <= code < 600:
        if stage == "RCPT" and _is_bad_mailbox(code, text):
            return "bounced"
        return "permanent"
    return "transient"  # 4xx, and anything garbled


def _is_bad_mailbox(code: int, text: bytes) -> bool:
    enhanced = _ENHANCED.match(text)
    if enhanced:
        return enhanced[1] == b"5" and enhanced[2] == b"1" and enhanced[3] not in _NOT_RECIPIENT
    return code in (550, 551, 553) and _UNKNOWN_USER.search(text) is not None


def _reply(code: int, text: bytes) -> str:
    # Kept in the ledger: PostgreSQL's text cannot hold NUL, and a reply it refuses would
    # leave a sent message unrecorded (and so sent again after its lease).
    reply = f"{code} {text.decode('utf-8', 'replace')}".replace("\n", " ").strip()
    return reply.replace("\x00", "\ufffd") if "\x00" in reply else reply


def wire_payload(data: bytes, *, ready: bool = False) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled, the final `.` line added.
    `ready`: the caller vouches there is nothing to fix (see `Outgoing.wire`)."""
    if ready:
        return data + b".\r\n"
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = _LINE_ENDS.sub(b"\r\n", data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


@functools.cache
def _local_hostname() -> str | None:
    # smtplib looks this up again for every connection; a slow resolver would cost seconds.
    name = socket.getfqdn()
    return name if "." in name else None


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SessionFailed(Exception):
    """Opening the connection failed; carries the outcome for the message that needed it."""

    def __init__(self, status: Status, text: str) -> None:
        super().__init__(text)
        self.status: Status = status
        self.text = text


class _Interrupted(Exception):
    """The connection broke before the message's bytes were sent: nothing can have arrived."""


class SmtpTransport:
    """One SMTP connection, opened on the first send and reused until it breaks or `close()`.

    Not thread-safe: a `TransportPool` gives each thread its own.
    """

    def __init__(
        self,
        endpoint: SmtpEndpoint | str,
        *,
        timeout: float = 30,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.endpoint = parse_smtp_url(endpoint) if isinstance(endpoint, str) else endpoint
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._rbuf = bytearray()  # received, not yet parsed (see `buffered_reply`)
        self._reused = False  # a transaction went over this connection already
        self._dirty = False  # a transaction was left open: RSET before the next one
        self._pipelining = False
        self._smtputf8 = False
        self._eight_bit = False

    def __repr__(self) -> str:
        return f"SmtpTransport({self.endpoint.display()!r})"

    # --- sending ---------------------------------------------------------------------------

    def send(self, message: Outgoing) -> Outcome:
        outcomes: list[Outcome] = []
        queue = [message]
        self.send_stream(lambda block: queue.pop() if queue else None, outcomes.append)
        return outcomes[0]

    def send_stream(
        self,
        take: Callable[[bool], Outgoing | None],
        emit: Callable[[Outcome], None],
    ) -> None:
        """Send what `take` hands out until it has nothing more, `emit`ting one outcome each
        (`stream_steps`, each reply read as it comes, waiting on this one connection)."""
        drive(self.stream_steps(take, emit), self._read_reply)

    def stream_steps(
        self,
        take: Callable[[bool], Outgoing | None],
        emit: Callable[[Outcome], None],
    ) -> Steps[None]:
        """Send what `take` hands out until it has nothing more, `emit`ting one outcome each.

        A generator that yields each time it needs the server's next reply: the caller sends
        the reply in (or throws the error reading it raised). `send_stream` reads them on this
        connection alone; `multiplex.send_multiplexed` drives several connections from one
        thread, reading whichever has answered.

        `take(block)` returns the next message, or None: when `block` is False it must not
        wait (None then means "nothing right now"). With PIPELINING the transactions overlap:
        the message bytes of one go out in the same write as the MAIL, RCPT and DATA of the
        next (RFC 2920 lets commands follow the end of data), so each message costs one
        round trip instead of two; `take(False)` is asked for that next message. Every message
        taken gets exactly one outcome, also when the connection breaks.
        """
        carry: Outgoing | None = None  # got its 354: its bytes go out with the next write
        retry: Outgoing | None = None  # interrupted before its bytes left: try once more
        message: Outgoing | None
        params: bytes | None
        while True:
            if retry is not None:
                message, retry, second_try = retry, None, True
            else:
                message = take(carry is None)
                second_try = False
            if message is None and carry is None:
                return
            params = b""
            if message is not None:
                refused = self._refusal(message)
                if refused is None and self._conn is None and carry is None:
                    try:
                        self._open()
                    except _SessionFailed as failure:
                        refused = Outcome(message.key, failure.status, failure.text)
                if refused is not None:
                    emit(refused)
                    message = None
                    if carry is None:
                        continue
                else:
                    params = self._mail_params(message)
                    if params is None:
                        emit(self._no_smtputf8(message))
                        message = None
                        if carry is None:
                            continue
                        params = b""
            conn = self._conn
            assert conn is not None  # opened above, or held by `carry`
            if not self._pipelining and carry is None and message is not None:
                # One command at a time: `carry` is never set on such a connection.
                reused = self._reused
                try:
                    emit((yield from self._transaction(conn, message, params or b"")))
                except _Interrupted as e:
                    self._drop()
                    if reused and not second_try:
                        retry = message
                    else:
                        emit(Outcome(message.key, "unavailable", str(e)))
                except (smtplib.SMTPException, OSError) as e:
                    self._drop()
                    emit(Outcome(message.key, "transient", f"{_LOST_DURING}: {e}"))
                continue
            carry, retry = yield from self._overlapped(
                conn, carry, message, params or b"", second_try, emit
            )

    def _refusal(self, message: Outgoing) -> Outcome | None:
        if not message.recipient or _BAD_ADDRESS_CHARS.search(message.recipient):
            return Outcome(
                message.key, "permanent", f"invalid recipient address {message.recipient!r}"
            )
        if _BAD_ADDRESS_CHARS.search(message.envelope_from):
            return Outcome(
                message.key, "permanent", f"invalid sender address {message.envelope_from!r}"
            )
        return None

    def _mail_params(self, message: Outgoing) -> bytes | None:
        """MAIL FROM parameters, or None when the server cannot take the addresses."""
        params = b""
        if not (message.envelope_from + message.recipient).isascii():
            if not self._smtputf8:
                return None
            params += b" SMTPUTF8"
        if self._eight_bit and not message.data.isascii():
            params += b" BODY=8BITMIME"
        return params

    def _no_smtputf8(self, message: Outgoing) -> Outcome:
        return Outcome(
            message.key,
            "permanent",
            f"{self.endpoint.display()} does not accept internationalized "
            f"addresses (no SMTPUTF8): {message.recipient!r}",
        )

    def _overlapped(
        self,
        conn: smtplib.SMTP,
        carry: Outgoing | None,
        message: Outgoing | None,
        params: bytes,
        second_try: bool,
        emit: Callable[[Outcome], None],
    ) -> Steps[tuple[Outgoing | None, Outgoing | None]]:
        """One write: `carry`'s bytes, then `message`'s commands; then their replies.
        Returns the next (carry, retry)."""
        out: list[bytes] = []
        if carry is not None:
            out.append(wire_payload(carry.data, ready=carry.wire))
        stages: list[str] = []
        if message is not None:
            if self._dirty and carry is None:
                stages.append("RSET")
                out.append(b"RSET\r\n")
            stages += ("MAIL", "RCPT", "DATA")
            out.append(b"MAIL FROM:<" + message.envelope_from.encode() + b">" + params + b"\r\n")
            out.append(b"RCPT TO:<" + message.recipient.encode() + b">\r\n")
            out.append(b"DATA\r\n")
        reused = self._reused
        try:
            self._sendall(b"".join(out))
        except OSError as e:
            return self._broken(carry, message, reused, second_try, e, emit)
        self._reused = True
        if carry is not None:
            try:
                code, text = yield
            except (smtplib.SMTPServerDisconnected, OSError) as e:
                return self._broken(carry, message, reused, second_try, e, emit)
            self._dirty = False  # the reply to the data ends the transaction either way
            # 421: the server is closing and did not take the message.
            status: Status = "unavailable" if code == 421 else classify("DATA", code, text)
            emit(Outcome(carry.key, status, _reply(code, text)))
            if code == 421:
                self._drop()
                return self._broken(None, message, True, second_try, None, emit, reply=(code, text))
        if message is None:
            return None, None
        failure: Outcome | None = None
        code = 0
        try:
            for stage in stages:
                code, text = yield
                if code == 421:  # the server is closing this connection
                    raise _Interrupted(f"{_reply(code, text)} (after {stage})")
                if code in _EXPECTED[stage]:
                    if stage == "MAIL":
                        self._dirty = True
                    elif stage == "RSET":
                        self._dirty = False
                    continue
                if stage == "RSET":
                    raise _Interrupted(f"{_reply(code, text)} (after RSET)")
                if failure is None:
                    status = classify(stage, code, text)
                    failure = Outcome(message.key, status, f"{_reply(code, text)} (after {stage})")
        except _Interrupted as e:
            self._drop()
            if reused and not second_try:
                return None, message
            emit(Outcome(message.key, "unavailable", str(e)))
            return None, None
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            return self._broken(None, message, reused, second_try, e, emit)
        if failure is not None:
            if code == 354:
                # The server wants data although the transaction failed: no half message.
                self._drop()
            emit(failure)
            return None, None
        return message, None

    def _broken(
        self,
        carry: Outgoing | None,
        message: Outgoing | None,
        reused: bool,
        second_try: bool,
        error: Exception | None,
        emit: Callable[[Outcome], None],
        reply: tuple[int, bytes] | None = None,
    ) -> tuple[Outgoing | None, Outgoing | None]:
        """The connection broke: `carry`'s bytes may have arrived (transient: the ledger keeps
        its Message-ID for the retry); `message` had sent none of its bytes, so it is tried
        once more on a fresh connection when this one was an old one the server may have
        closed."""
        self._drop()
        if carry is not None:
            emit(Outcome(carry.key, "transient", f"{_LOST_DURING}: {error}"))
        if message is None:
            return None, None
        if reused and not second_try:
            return None, message
        why = (
            f"{_reply(*reply)} (after DATA)"
            if reply is not None
            else f"connection lost before the message was sent: {error}"
        )
        emit(Outcome(message.key, "unavailable", why))
        return None, None

    def _sendall(self, data: bytes) -> None:
        sock = self._conn.sock if self._conn is not None else None
        if sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        sock.sendall(data)

    # --- reading replies --------------------------------------------------------------------
    # Replies are read from the socket into one buffer of this transport's own (not smtplib's
    # file), so `send_stream` and a multiplexer reading whichever connection answered parse
    # the same bytes the same way.

    @property
    def socket(self) -> socket.socket | None:
        """The open connection's socket (None when closed): what a multiplexer waits on."""
        return self._conn.sock if self._conn is not None else None

    def receive(self) -> None:
        """Read what the server has sent (waits for at least one byte, up to the timeout)."""
        sock = self.socket
        if sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        chunk = sock.recv(65536)
        if not chunk:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        self._rbuf += chunk

    def buffered(self) -> bool:
        """Bytes are waiting to be read without waiting on the network (TLS keeps some)."""
        sock = self.socket
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def buffered_reply(self) -> tuple[int, bytes] | None:
        """One complete reply from what was received, or None if it has not all arrived.
        Parsed as smtplib's getreply does, without its per-line overhead."""
        buf = self._rbuf
        lines: list[bytes] = []
        pos = 0
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                if len(buf) - pos > _MAXLINE:
                    raise smtplib.SMTPResponseException(500, b"Line too long.")
                return None
            if end + 1 - pos > _MAXLINE:
                raise smtplib.SMTPResponseException(500, b"Line too long.")
            line = bytes(buf[pos : end + 1])
            pos = end + 1
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                break
        del buf[:pos]
        try:
            code = int(line[:3])
        except ValueError:
            code = -1
        return code, b"\n".join(lines)

    def _read_reply(self) -> tuple[int, bytes]:
        """The next reply, waiting on this connection for it."""
        while True:
            reply = self.buffered_reply()
            if reply is not None:
                return reply
            self.receive()

    def _transaction(self, conn: smtplib.SMTP, message: Outgoing, params: bytes) -> Steps[Outcome]:
        """One message on a server without PIPELINING: each command waits for its reply."""
        key = message.key
        steps: list[tuple[str, bytes]] = []
        if self._dirty:
            steps.append(("RSET", b"RSET\r\n"))
        steps.append(
            ("MAIL", b"MAIL FROM:<" + message.envelope_from.encode() + b">" + params + b"\r\n")
        )
        steps.append(("RCPT", b"RCPT TO:<" + message.recipient.encode() + b">\r\n"))
        steps.append(("DATA", b"DATA\r\n"))
        self._reused = True
        try:
            for stage, command in steps:
                self._sendall(command)
                code, text = yield
                if code == 421:  # the server is closing this connection
                    raise _Interrupted(f"{_reply(code, text)} (after {stage})")
                if code in _EXPECTED[stage]:
                    if stage == "MAIL":
                        self._dirty = True
                    elif stage == "RSET":
                        self._dirty = False
                    continue
                if stage == "RSET":
                    raise _Interrupted(f"{_reply(code, text)} (after RSET)")
                return Outcome(
                    key, classify(stage, code, text), f"{_reply(code, text)} (after {stage})"
                )
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            raise _Interrupted(f"connection lost before the message was sent: {e}") from e

        self._sendall(wire_payload(message.data, ready=message.wire))
        code, text = yield
        self._dirty = False  # the reply to the data ends the transaction either way
        if code == 421:  # the server is closing: it did not take the message
            self._drop()
            return Outcome(key, "unavailable", _reply(code, text))
        return Outcome(key, classify("DATA", code, text), _reply(code, text))

    # --- the connection --------------------------------------------------------------------

    def _open(self) -> smtplib.SMTP:
        endpoint = self.endpoint
        shown = endpoint.display()
        hostname = self._local_hostname or _local_hostname()
        conn: smtplib.SMTP | None = None
        stage = "connecting to"
        try:
            # Connecting in the constructor is what tells smtplib the host name for TLS.
            if endpoint.scheme == "smtps":
                conn = smtplib.SMTP_SSL(
                    endpoint.host,
                    endpoint.port,
                    local_hostname=hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                conn = smtplib.SMTP(
                    endpoint.host, endpoint.port, local_hostname=hostname, timeout=self.timeout
                )
            stage = "greeting"
            conn.ehlo_or_helo_if_needed()
            encrypted = endpoint.scheme == "smtps"
            if endpoint.scheme == "smtp" and endpoint.starttls != "off":
                if conn.has_extn("starttls"):
                    stage = "STARTTLS with"
                    conn.starttls(context=self._context())
                    conn.ehlo()
                    encrypted = True
                elif endpoint.starttls == "require":
                    raise _SessionFailed(
                        "permanent",
                        f"{shown} does not offer STARTTLS and the URL says starttls=require",
                    )
            if endpoint.username is not None:
                if (
                    not encrypted
                    and endpoint.starttls == "auto"
                    and not _is_loopback(endpoint.host)
                ):
                    raise _SessionFailed(
                        "permanent",
                        f"{shown} offers no encryption; refusing to send the password in "
                        "clear text. Use smtps://, or add ?starttls=off to allow it",
                    )
                stage = "logging in to"
                conn.login(endpoint.username, endpoint.password or "")
        except _SessionFailed:
            _close(conn)
            raise
        except smtplib.SMTPResponseException as e:
            _close(conn)
            raw = e.smtp_error if isinstance(e.smtp_error, bytes) else str(e.smtp_error).encode()
            status = classify(stage, e.smtp_code, raw)
            if status == "transient":  # 421 or another 4xx before any message: the server's
                status = "unavailable"
            raise _SessionFailed(status, f"{stage} {shown}: {_reply(e.smtp_code, raw)}") from None
        except ssl.SSLCertVerificationError as e:
            _close(conn)
            raise _SessionFailed(
                "permanent", f"{stage} {shown}: TLS certificate not trusted: {e.verify_message}"
            ) from None
        except smtplib.SMTPServerDisconnected as e:
            _close(conn)
            raise _SessionFailed("unavailable", f"{stage} {shown}: {e}") from None
        except smtplib.SMTPException as e:  # no AUTH offered, no usable AUTH mechanism
            _close(conn)
            raise _SessionFailed("permanent", f"{stage} {shown}: {e}") from None
        except OSError as e:  # refused, unreachable, timed out, TLS handshake
            _close(conn)
            raise _SessionFailed("unavailable", f"{stage} {shown}: {e}") from None
        self._pipelining = conn.has_extn("pipelining")
        self._smtputf8 = conn.has_extn("smtputf8")
        self._eight_bit = conn.has_extn("8bitmime")
        self._dirty = False
        self._reused = False
        self._rbuf.clear()
        self._conn = conn
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
        self._rbuf.clear()
        self._dirty = False

    def abort(self) -> None:
        """Close the connection at once, without QUIT (mid-transaction: the server discards
        the unfinished message)."""
        self._drop()

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
        self._drop()
