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
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import smtplib
import socket
import ssl

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
    return f"{code} {text.decode('utf-8', 'replace')}".replace("\n", " ").strip()


def wire_payload(data: bytes) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled, the final `.` line added."""
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
        self._dirty = False  # a transaction was left open: RSET before the next one
        self._pipelining = False
        self._smtputf8 = False
        self._eight_bit = False

    def __repr__(self) -> str:
        return f"SmtpTransport({self.endpoint.display()!r})"

    # --- sending ---------------------------------------------------------------------------

    def send(self, message: Outgoing) -> Outcome:
        key = message.key
        if not message.recipient or _BAD_ADDRESS_CHARS.search(message.recipient):
            return Outcome(key, "permanent", f"invalid recipient address {message.recipient!r}")
        if _BAD_ADDRESS_CHARS.search(message.envelope_from):
            return Outcome(key, "permanent", f"invalid sender address {message.envelope_from!r}")
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                conn = self._conn or self._open()
            except _SessionFailed as failure:
                return Outcome(key, failure.status, failure.text)
            mail_params = b""
            if not (message.envelope_from + message.recipient).isascii():
                if not self._smtputf8:
                    return Outcome(
                        key,
                        "permanent",
                        f"{self.endpoint.display()} does not accept internationalized "
                        f"addresses (no SMTPUTF8): {message.recipient!r}",
                    )
                mail_params += b" SMTPUTF8"
            if self._eight_bit and not message.data.isascii():
                mail_params += b" BODY=8BITMIME"
            try:
                return self._transaction(conn, message, mail_params)
            except _Interrupted as e:
                self._drop()
                # A server may close an idle connection at any time; when it did so before
                # this message was sent, one fresh connection is a safe and cheap retry.
                if reused and attempt == 1:
                    continue
                return Outcome(key, "transient", str(e))
            except (smtplib.SMTPException, OSError) as e:
                self._drop()
                return Outcome(key, "transient", f"connection lost during the message: {e}")
        raise AssertionError("unreachable")

    def _transaction(self, conn: smtplib.SMTP, message: Outgoing, params: bytes) -> Outcome:
        key = message.key
        steps: list[tuple[str, bytes]] = []
        if self._dirty:
            steps.append(("RSET", b"RSET\r\n"))
        steps.append(
            ("MAIL", b"MAIL FROM:<" + message.envelope_from.encode() + b">" + params + b"\r\n")
        )
        steps.append(("RCPT", b"RCPT TO:<" + message.recipient.encode() + b">\r\n"))
        steps.append(("DATA", b"DATA\r\n"))
        expected = {"RSET": (250,), "MAIL": (250,), "RCPT": (250, 251), "DATA": (354,)}

        failure: Outcome | None = None
        try:
            if self._pipelining:
                conn.send(b"".join(command for _, command in steps))
            for stage, command in steps:
                if not self._pipelining:
                    conn.send(command)
                code, text = conn.getreply()
                if code == 421:  # the server is closing this connection
                    raise _Interrupted(f"{_reply(code, text)} (after {stage})")
                if code in expected[stage]:
                    if stage == "MAIL":
                        self._dirty = True
                    elif stage == "RSET":
                        self._dirty = False
                    continue
                if stage == "RSET":
                    raise _Interrupted(f"{_reply(code, text)} (after RSET)")
                if failure is None:
                    status = classify(stage, code, text)
                    failure = Outcome(key, status, f"{_reply(code, text)} (after {stage})")
                if not self._pipelining:
                    break  # the rest was never sent
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            raise _Interrupted(f"connection lost before the message was sent: {e}") from e

        if failure is not None:
            if code == 354:
                # The server wants data although the transaction failed: no half message.
                self._drop()
            return failure

        conn.send(wire_payload(message.data))
        code, text = conn.getreply()
        self._dirty = False  # the reply to the data ends the transaction either way
        if code == 421:
            self._drop()
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
            raise _SessionFailed(
                classify(stage, e.smtp_code, raw), f"{stage} {shown}: {_reply(e.smtp_code, raw)}"
            ) from None
        except ssl.SSLCertVerificationError as e:
            _close(conn)
            raise _SessionFailed(
                "permanent", f"{stage} {shown}: TLS certificate not trusted: {e.verify_message}"
            ) from None
        except smtplib.SMTPServerDisconnected as e:
            _close(conn)
            raise _SessionFailed("transient", f"{stage} {shown}: {e}") from None
        except smtplib.SMTPException as e:  # no AUTH offered, no usable AUTH mechanism
            _close(conn)
            raise _SessionFailed("permanent", f"{stage} {shown}: {e}") from None
        except OSError as e:  # refused, unreachable, timed out, TLS handshake
            _close(conn)
            raise _SessionFailed("transient", f"{stage} {shown}: {e}") from None
        self._pipelining = conn.has_extn("pipelining")
        self._smtputf8 = conn.has_extn("smtputf8")
        self._eight_bit = conn.has_extn("8bitmime")
        self._dirty = False
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
        self._dirty = False

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
        self._drop()
