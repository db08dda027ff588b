"""Single letters through the project's SMTP channel: the sign-up confirmation (off the
request thread) and the organizers' alerts.

Sending in the background keeps the form's answer equally fast whether an email goes out or
not (a suppressed address gets none), so response times do not tell who is on a list.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from scheduler.channels import sends_email
from scheduler.config.model import Sender
from scheduler.content.message import POLICY, domain_of
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.emailing import sender_for
from scheduler.errors import SchedulerError
from scheduler.mail.compose import sanitize_header_text
from scheduler.mail.transport import Outgoing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Letter:
    """One transactional email to one person."""

    to: str
    name: str | None
    subject: str
    text: str
    html: str
    language: str
    sender: Sender | None = None  # a chapter's own; the channel's sender otherwise


def email_channel(ctx: DeliveryContext) -> str:
    """The channel confirmations go through: the first SMTP channel of campaigns.yaml."""
    for name, channel in ctx.config.channels.items():
        if sends_email(channel):
            return str(name)
    raise SchedulerError("campaigns.yaml has no smtp channel to send confirmations through")


def _sender(ctx: DeliveryContext, channel: str) -> Sender:
    return sender_for(ctx.config, None, ctx.email_channel(channel))


def _address(display: str | None, email: str) -> Address:
    # Address() refuses CR/LF and encodes non-ASCII names: a name typed into the form can
    # never add a header.
    local, _, domain = email.partition("@")
    return Address(display_name=sanitize_header_text(display or ""), username=local, domain=domain)


def build_letter(letter: Letter, sender: Sender, *, now: dt.datetime | None = None) -> bytes:
    domain = domain_of(sender.address)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(sender.display_name(letter.language), sender.address)
    msg["To"] = _address(letter.name, letter.to)
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg["Subject"] = sanitize_header_text(letter.subject)
    msg["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: an automatic message; well-behaved autoresponders do not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["MIME-Version"] = "1.0"
    msg.set_content(letter.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(letter.html, subtype="html", charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = letter.language
    return msg.as_bytes(policy=POLICY)


class Mailer:
    """Sends letters through the SMTP channel's TransportPool, one background thread.

    `background=False` sends inside `send()`: for tests and one-off tools.
    """

    def __init__(self, ctx: DeliveryContext, *, background: bool = True) -> None:
        self.ctx = ctx
        self.channel = email_channel(ctx)
        self.sender = _sender(ctx, self.channel)
        self._background = background
        self._queue: queue.Queue[Letter | None] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self._last_key = 0
        self.failed = 0

    def send(self, letter: Letter) -> None:
        if not self._background:
            self._deliver(letter)
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="web-mailer", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(letter)
        except queue.Full:
            # Far beyond what the rate limits let through: drop rather than block requests.
            log.warning("event=confirmation_dropped reason=queue_full")

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued letter has been handed to the transport."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        self.ctx.close()

    def _run(self) -> None:
        while True:
            letter = self._queue.get()
            try:
                if letter is None:
                    return
                self._deliver(letter)
            finally:
                self._queue.task_done()

    def _next_key(self) -> int:
        # Negative, so it never names a delivery of the ledger (`file:` writes <key>.eml);
        # from the clock, so letters of several processes do not overwrite each other.
        with self._lock:
            self._last_key = min(self._last_key - 1, -time.time_ns() // 1000)
            return self._last_key

    def _deliver(self, letter: Letter) -> None:
        try:
            sender = letter.sender or self.sender
            data = build_letter(letter, sender)
            message = Outgoing(
                key=self._next_key(),
                envelope_from=sender.address,
                recipient=letter.to,
                data=data,
            )
            outcomes = list(self.ctx.pool(self.channel).send_all([message]))
        except Exception as e:  # a broken channel must not take the web process down
            self.failed += 1
            log.error("event=confirmation_failed channel=%s error=%s", self.channel, e)
            return
        for outcome in outcomes:
            if outcome.status == "sent":
                self.sent += 1
                log.info("event=confirmation_sent channel=%s", self.channel)
            else:
                self.failed += 1
                # Never the address: logs are read by people who should not see subscribers.
                log.warning(
                    "event=confirmation_failed channel=%s status=%s response=%s",
                    self.channel,
                    outcome.status,
                    outcome.response,
                )
