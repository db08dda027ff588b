"""Delivery status notifications: RFC 3464 read here, the common non-standard forms (qmail,
Exim, Exchange, Yahoo, ...) through `flufl.bounce`, Mailman's maintained detectors.

RFC 3464 is read by hand because flufl.bounce reports only which addresses failed, not the
status code, and the code decides between a hard and a soft bounce:

- hard: `failed` with a 5.1.x status (bad mailbox, bad domain, no mail accepted: the
  address is wrong) or 5.2.1 (mailbox disabled);
- soft: `failed` with any other status: 4.x.x, and 5.x.x about the message or the
  receiver's policy (a full mailbox 5.2.2, a spam block 5.7.1), which say nothing about the
  address being wrong. Soft bounces are scored (see events.py);
- delayed: a warning, not a bounce (the server keeps trying and reports the end), ignored;
- delivered, relayed or expanded: a success report, ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Bounce:
    hard: bool
    status: str  # "5.1.1", or "non-standard" when a detector found it without a code
    success: bool = False  # a DSN that reports delivery or only a delay: nothing to do


def _is_hard(status: str) -> bool:
    klass, subject, detail = status.split(".")
    return klass == "5" and (subject == "1" or (subject == "2" and detail == "1"))


def _blocks(msg: Message) -> list[Message]:
    found: list[Message] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            # The email package parses the per-message block and each per-recipient block
            # as header-only messages.
            found.extend(p for p in payload if isinstance(p, Message))
    return found


def read_bounce(msg: Message) -> Bounce | None:
    """What a bounce says, or None when `msg` is not a bounce at all."""
    outcomes: list[Bounce] = []
    for block in _blocks(msg):
        action = str(block.get("Action", "")).strip().lower()
        if not action:
            continue  # the per-message block
        m = _STATUS.search(str(block.get("Status", "")))
        status = (
            f"{m[1]}.{m[2]}.{m[3]}" if m else ("5.0.0" if action.startswith("fail") else "4.0.0")
        )
        if action.startswith(("delivered", "relayed", "expanded")):
            outcomes.append(Bounce(False, status, success=True))
        elif action.startswith(("failed", "error")):
            outcomes.append(Bounce(_is_hard(status), status))
        elif action.startswith("delayed"):
            outcomes.append(Bounce(False, status, success=True))
    failures = [b for b in outcomes if not b.success]
    if failures:
        # A message sent to one address bounces for one address; if a report lists several,
        # the gravest decides.
        return max(failures, key=lambda b: (b.hard, b.status))
    if outcomes:
        return outcomes[0]
    # flufl.bounce's "temporary" failures are delay warnings: not bounces either.
    temporary, permanent = all_failures(msg)
    if permanent:
        return Bounce(True, "non-standard")
    if temporary:
        return Bounce(False, "non-standard", success=True)
    return None
