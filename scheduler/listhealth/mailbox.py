"""Read the bounce mailbox over IMAP or POP3 (TLS) and apply what each message reports.

One message at a time: it is classified (`classify`), recorded and applied (`events.apply`),
then moved to the processed folder (IMAP). The record comes first, so a crash before the
move leaves a message that the next run recognizes and only moves. A message nothing can be
made of stays where it is, flagged (`\\Flagged` and the keyword `$SchedulerUnparsed`) for a
person, and is counted. Over POP3 nothing is moved or deleted: the record alone keeps a
second read from changing anything.

Mailbox URL (SCHEDULER_MAILBOX_URL, never campaigns.yaml: it holds a password):
`imaps://USER:PASSWORD@HOST:993/INBOX?processed=Processed`, `imap://...` (STARTTLS
required), `pop3s://USER:PASSWORD@HOST:995`, `pop3://...` (STLS required). The password
may instead be in SCHEDULER_MAILBOX_PASSWORD.
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import logging
import poplib
import re
import ssl
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler import settings
from scheduler.audience.address import address_key
from scheduler.config.model import Config
from scheduler.errors import SchedulerError
from scheduler.listhealth import arf, dsn, events, mailto, verp
from scheduler.listhealth.events import Report
from scheduler.store.schema import HealthKind, health_events, subscribers
from scheduler.tokens import BadToken, secret_key, verify

log = logging.getLogger(__name__)

URL_ENV = settings.MAILBOX_URL.name
PASSWORD_ENV = settings.MAILBOX_PASSWORD.name
SOURCE = "mailbox"
UNPARSED_KEYWORD = "$SchedulerUnparsed"
# Headers a receiving server writes with the envelope recipient: our VERP address.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
UNSUBSCRIBE_PURPOSE = "unsubscribe"  # the purpose the one-click link is signed for
_LINK_TOKEN = re.compile(r"/unsubscribe/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


class MailboxError(SchedulerError):
    """The mailbox cannot be reached, refused the login, or its URL is wrong."""


@dataclass(frozen=True, slots=True)
class MailboxUrl:
    scheme: str  # imaps, imap, pop3s, pop3
    host: str
    port: int
    user: str
    password: str
    folder: str = "INBOX"
    processed: str = "Processed"

    @classmethod
    def parse(cls, url: str, *, password: str | None = None) -> MailboxUrl:
        parts = urlsplit(url)
        defaults = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}
        if parts.scheme not in defaults or not parts.hostname or not parts.username:
            raise MailboxError(
                f"cannot read mailbox URL {_redacted(url)!r}; write "
                "'imaps://USER@HOST:993/INBOX' (or imap:// with STARTTLS, pop3s://, pop3://) "
                f"and the password in ${PASSWORD_ENV} or the URL"
            )
        secret = unquote(parts.password) if parts.password else (password or "")
        if not secret:
            raise MailboxError(f"no mailbox password: set ${PASSWORD_ENV} or put it in the URL")
        query = parse_qs(parts.query)
        folder = unquote(parts.path.strip("/")) or "INBOX"
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or defaults[parts.scheme],
            user=unquote(parts.username),
            password=secret,
            folder=folder,
            processed=query.get("processed", ["Processed"])[0],
        )


def _redacted(url: str) -> str:
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


# --- what a message says ------------------------------------------------------------------


def event_key(raw: bytes, msg: Message) -> str:
    message_id = str(msg.get("Message-ID", "")).strip()
    if message_id:
        return "mid:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()
    return "sha:" + hashlib.sha256(raw).hexdigest()


def _first_delivery(*texts: str, key: bytes) -> int | None:
    for text in texts:
        found = verp.delivery_ids(text, key)
        if found:
            return found[0]
    return None


def _linked_subscriber(
    engine: Engine, text: str, key: bytes
) -> tuple[int, tuple[str, ...], str | None] | None:
    """The subscriber, lists and occurrence of the first signed unsubscribe token in `text`
    (a returned List-Unsubscribe link or a mailto subject) whose subscriber still has that
    address."""
    for token in [*_LINK_TOKEN.findall(text), *mailto.subject_tokens(text)]:
        # The one-click link's token (scheduler/content/render.py: recipient_links).
        try:
            data = verify(UNSUBSCRIBE_PURPOSE, token, key)
        except BadToken:
            continue
        sid, email_address, names = data.get("s"), data.get("e"), data.get("l")
        if not (isinstance(sid, int) and isinstance(email_address, str) and isinstance(names, str)):
            continue
        with engine.connect() as conn:
            stored = conn.scalar(sa.select(subscribers.c.email_key).where(subscribers.c.id == sid))
        if stored is not None and stored == address_key(email_address):
            occurrence = data.get("o")
            return (
                sid,
                tuple(n.strip() for n in names.split(",") if n.strip()),
                occurrence if isinstance(occurrence, str) else None,
            )
    return None


def classify(engine: Engine, raw: bytes, *, key: bytes | None = None) -> Report:
    """What one message of the bounce mailbox reports, and about whom."""
    key = key or secret_key()
    msg = email.message_from_bytes(raw)
    ek = event_key(raw, msg)

    def report(kind: HealthKind, detail: str, **who: object) -> Report:
        return Report(source=SOURCE, event_key=ek, kind=kind, detail=detail, **who)  # type: ignore[arg-type]

    feedback = arf.read_feedback(msg)
    if feedback is not None:
        if not feedback.complaint:
            return report(HealthKind.IGNORED, f"feedback {feedback.feedback_type or '?'}")
        detail = f"feedback {feedback.feedback_type}"
        delivery = _first_delivery(feedback.original_mail_from, feedback.original_text, key=key)
        if delivery is not None:
            return report(HealthKind.COMPLAINT, detail, delivery_id=delivery)
        linked = _linked_subscriber(engine, feedback.original_text, key)
        if linked is not None:
            return report(
                HealthKind.COMPLAINT, detail, subscriber_id=linked[0], occurrence_id=linked[2]
            )
        return report(HealthKind.UNPARSEABLE, "complaint about no delivery of ours")

    bounce = dsn.read_bounce(msg)
    if bounce is not None:
        if bounce.success:
            return report(HealthKind.IGNORED, f"delivery report or delay {bounce.status}")
        recipients = "\n".join(str(v) for h in _RECIPIENT_HEADERS for v in msg.get_all(h, []))
        delivery = _first_delivery(recipients, raw.decode("utf-8", "replace"), key=key)
        if delivery is None:
            return report(HealthKind.UNPARSEABLE, f"bounce {bounce.status} of no delivery of ours")
        kind = HealthKind.HARD_BOUNCE if bounce.hard else HealthKind.SOFT_BOUNCE
        return report(kind, f"bounce {bounce.status}", delivery_id=delivery)

    subject = str(msg.get("Subject", ""))
    if mailto.SUBJECT_WORD in subject.lower():
        # Only the signed token names the person: From is whatever the sender typed.
        linked = _linked_subscriber(engine, subject, key)
        if linked is not None:
            return report(
                HealthKind.UNSUBSCRIBE,
                "mailto",
                subscriber_id=linked[0],
                lists=linked[1],
                occurrence_id=linked[2],
            )
        return report(HealthKind.UNPARSEABLE, "unsubscribe request without a valid token")

    if str(msg.get("Auto-Submitted", "no")).strip().lower().startswith("auto-"):
        return report(HealthKind.IGNORED, "automatic reply")
    return report(HealthKind.UNPARSEABLE, "not a bounce, complaint or unsubscribe")


# --- reading the mailbox ------------------------------------------------------------------


class Box(Protocol):
    def messages(self) -> Iterator[tuple[str, bytes]]: ...
    def done(self, uid: str) -> None: ...
    def keep(self, uid: str) -> None: ...


@dataclass
class MailboxReport:
    counts: Counter[str] = field(default_factory=Counter)  # per HealthKind, new reports
    already: int = 0  # recorded by an earlier read: nothing changed
    suppressed: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {k.value: self.counts.get(k.value, 0) for k in HealthKind}
        out["already_processed"] = self.already
        out["suppressed"] = self.suppressed
        return out


def process(engine: Engine, config: Config, box: Box, *, key: bytes | None = None) -> MailboxReport:
    result = MailboxReport()
    policy = events.Policy.of(config)
    for uid, raw in box.messages():
        msg_key = event_key(raw, email.message_from_bytes(raw))
        if events.already_seen(engine, SOURCE, msg_key):
            result.already += 1
            kind = _recorded_kind(engine, msg_key)
        else:
            try:
                report = classify(engine, raw, key=key)
            except Exception as e:  # one odd message must not stop the mailbox
                log.warning("mailbox message %s could not be read: %r", uid, e)
                report = Report(
                    source=SOURCE,
                    event_key=msg_key,
                    kind=HealthKind.UNPARSEABLE,
                    detail=f"cannot parse: {type(e).__name__}",
                )
            applied = events.apply(engine, config, report, policy=policy)
            kind = report.kind
            if applied.new:
                result.counts[kind.value] += 1
                result.suppressed += applied.suppressed
            else:
                result.already += 1
            log.info("mailbox message %s: %s (%s)", uid, kind.value, report.detail)
        if kind == HealthKind.UNPARSEABLE:
            box.keep(uid)
        else:
            box.done(uid)
    return result


def _recorded_kind(engine: Engine, msg_key: str) -> HealthKind:
    e = health_events.c
    with engine.connect() as conn:
        kind = conn.scalar(sa.select(e.kind).where((e.source == SOURCE) & (e.event_key == msg_key)))
    return HealthKind(str(kind))


class ImapBox:
    def __init__(self, conn: imaplib.IMAP4, url: MailboxUrl) -> None:
        self.conn = conn
        self.url = url
        self._can_move = b"MOVE" in b" ".join(_capabilities(conn))
        self._folder_ready = False

    def messages(self) -> Iterator[tuple[str, bytes]]:
        typ, data = self.conn.uid("SEARCH", "UNDELETED")
        _ok((typ, data))
        uids = (data[0] or b"").split() if data and isinstance(data[0], bytes) else []
        for uid in (u.decode() for u in uids):
            typ, fetched = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((p[1] for p in fetched if isinstance(p, tuple)), None)
            if typ == "OK" and isinstance(raw, bytes):
                yield uid, raw

    def done(self, uid: str) -> None:
        if not self._folder_ready:
            self.conn.create(_quote(self.url.processed))  # "NO" when it exists: fine
            self._folder_ready = True
        if self._can_move:
            _ok(self.conn.uid("MOVE", uid, _quote(self.url.processed)))
            return
        _ok(self.conn.uid("COPY", uid, _quote(self.url.processed)))
        _ok(self.conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"))
        _ok(self.conn.expunge())

    def keep(self, uid: str) -> None:
        _ok(self.conn.uid("STORE", uid, "+FLAGS.SILENT", rf"(\Flagged {UNPARSED_KEYWORD})"))


class Pop3Box:
    """POP3 has no folders: messages are left on the server, recognized on the next read."""

    def __init__(self, conn: poplib.POP3) -> None:
        self.conn = conn

    def messages(self) -> Iterator[tuple[str, bytes]]:
        _resp, listing, _octets = self.conn.uidl()
        for line in listing:
            number, _, uid = line.decode().partition(" ")
            _resp, lines, _octets = self.conn.retr(int(number))
            yield uid, b"\r\n".join(lines) + b"\r\n"

    def done(self, uid: str) -> None:
        pass

    def keep(self, uid: str) -> None:
        pass


def _capabilities(conn: imaplib.IMAP4) -> list[bytes]:
    return [c.encode() if isinstance(c, str) else c for c in conn.capabilities]


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(response: tuple[str, object]) -> None:
    typ, data = response
    if typ != "OK":
        raise MailboxError(f"the IMAP server refused: {data!r}")


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


@contextmanager
def open_box(url: MailboxUrl, *, cafile: str | None = None, timeout: float = 30) -> Iterator[Box]:
    """A logged-in mailbox over TLS (implicit, or STARTTLS/STLS required)."""
    context = tls_context(cafile)
    try:
        if url.scheme.startswith("imap"):
            if url.scheme == "imaps":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    url.host, url.port, ssl_context=context, timeout=timeout
                )
            else:
                imap = imaplib.IMAP4(url.host, url.port, timeout=timeout)
                if "STARTTLS" not in imap.capabilities:
                    raise MailboxError(f"{url.host} offers no STARTTLS: refusing to log in")
                imap.starttls(ssl_context=context)
            imap.login(url.user, url.password)
            _ok(imap.select(_quote(url.folder)))
            try:
                yield ImapBox(imap, url)
            finally:
                with suppress(imaplib.IMAP4.error, OSError):
                    imap.close()
                    imap.logout()
        else:
            if url.scheme == "pop3s":
                pop: poplib.POP3 = poplib.POP3_SSL(
                    url.host, url.port, context=context, timeout=timeout
                )
            else:
                pop = poplib.POP3(url.host, url.port, timeout=timeout)
                pop.stls(context=context)
            pop.user(url.user)
            pop.pass_(url.password)
            try:
                yield Pop3Box(pop)
            finally:
                with suppress(poplib.error_proto, OSError):
                    pop.quit()
    except (imaplib.IMAP4.error, poplib.error_proto) as e:
        raise MailboxError(f"mailbox {url.user}@{url.host}: {e}") from None
    except (OSError, ssl.SSLError) as e:
        raise MailboxError(f"cannot reach mailbox {url.host}:{url.port}: {e}") from None


def from_env(url: str | None = None) -> MailboxUrl:
    value = url or settings.MAILBOX_URL.raw()
    if not value:
        raise MailboxError(f"no mailbox: set ${URL_ENV} (e.g. imaps://bounces@mail.example.org)")
    return MailboxUrl.parse(value, password=settings.MAILBOX_PASSWORD.raw())
