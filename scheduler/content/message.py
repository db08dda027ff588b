"""A complete email message: multipart/alternative with the headers a bulk sender must send."""

from __future__ import annotations

import datetime as dt
import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from scheduler.config.model import Sender
from scheduler.content.render import Recipient, RenderedEmail
from scheduler.listhealth.mailto import mailto_uri

# Long header values such as List-Unsubscribe URLs must stay plain ASCII: with the default
# 78-column limit the email package turns an unbreakable URL into RFC 2047 encoded-words, which
# mail clients do not decode in that header. RFC 5322 allows 998 columns.
POLICY = SMTP.clone(max_line_length=998)


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def message_id_for(delivery_key: str, domain: str) -> str:
    """The same Message-ID on every attempt of one delivery, so receivers can drop duplicates."""
    digest = hashlib.sha256(delivery_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def list_id_for(list_name: str, domain: str) -> str:
    return f"<{list_name}.{domain}>"


def _address(display: str | None, email: str) -> Address:
    # Address() encodes non-ASCII display names per RFC 2047 and refuses CR/LF, so a
    # subscriber's name can never add a header.
    local, _, domain = email.partition("@")
    name = " ".join((display or "").split())
    return Address(display_name=name, username=local, domain=domain)


def build_email(
    *,
    rendered: RenderedEmail,
    sender: Sender,
    recipient: Recipient,
    delivery_key: str,
    list_name: str,
    unsubscribe_mailto: str | None = None,
    date: dt.datetime | None = None,
) -> EmailMessage:
    domain = domain_of(sender.address)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(sender.display_name(rendered.language), sender.address)
    msg["To"] = _address(recipient.name, recipient.email)
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id_for(delivery_key, domain)
    msg["List-Id"] = list_id_for(list_name, domain)
    unsubscribe = f"<{rendered.unsubscribe_url}>"
    if unsubscribe_mailto:
        unsubscribe += f", <{mailto_uri(unsubscribe_mailto, rendered.unsubscribe_url)}>"
    msg["List-Unsubscribe"] = unsubscribe
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["MIME-Version"] = "1.0"
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # After the parts: set_content() drops every Content-* header set before it.
    msg["Content-Language"] = rendered.language
    return msg
