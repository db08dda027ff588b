"""Abuse feedback reports (ARF, RFC 5965): a recipient pressed "this is spam".

A report is `multipart/report; report-type=feedback-report` with a human-readable part, a
`message/feedback-report` part (Feedback-Type, User-Agent, Version, Original-Mail-From,
...) and the original message or its headers. Who complained is read from what we signed:
the VERP token in Original-Mail-From or anywhere in the returned message, or the token of
the returned List-Unsubscribe link; providers often redact the recipient's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

# Feedback types that are a complaint about the mail; `not-spam` is the opposite.
COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})


@dataclass(frozen=True, slots=True)
class Feedback:
    feedback_type: str
    original_mail_from: str
    original_text: str  # the returned message or headers, as text, to look for our tokens

    @property
    def complaint(self) -> bool:
        return self.feedback_type in COMPLAINTS


def _text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n".join(p.as_string() if isinstance(p, Message) else str(p) for p in payload)
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(payload)


def read_feedback(msg: Message) -> Feedback | None:
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "", header="content-type")).lower() != "feedback-report":
        return None
    fields: Message | None = None
    original: list[str] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/feedback-report":
            fields = HeaderParser().parsestr(_text(part).lstrip("\r\n"))
        elif kind in ("message/rfc822", "text/rfc822-headers"):
            original.append(_text(part))
    if fields is None:
        return None
    return Feedback(
        feedback_type=str(fields.get("Feedback-Type", "")).strip().lower(),
        original_mail_from=str(fields.get("Original-Mail-From", "")).strip(),
        original_text="\n".join(original),
    )
