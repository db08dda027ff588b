"""Failure reasons made groupable: the same refusal for fifty people is one line, not fifty.

Servers echo the recipient in their replies (Postfix: `550 5.1.1 <ana@example.org>:
Recipient address rejected: User unknown in virtual mailbox table`), and our own messages
quote the address (`cannot compose: recipient address 'ana@example' ...`). `reason_key`
removes the addresses, the stage suffix and queue-specific noise, so that
`status` and the dashboard can show `50 × bounced: 550 5.1.1 Recipient address rejected:
User unknown in virtual mailbox table`. The full reply stays in the delivery's row.
"""

from __future__ import annotations

import re

MAX_REASON = 120

# <local@domain>, 'local@domain', "local@domain" and bare local@domain (UTF-8 allowed).
_BRACKETED = re.compile(r"""<[^<>\s]*@[^<>\s]*>|'[^'\s]*@[^'\s]*'|"[^"\s]*@[^"\s]*\"""")
_BARE = re.compile(r"[^\s<>'\"():;,]+@[^\s<>'\"():;,]+\.[^\s<>'\"():;,]+")
_STAGE = re.compile(r"\s*\(after (?:MAIL|RCPT|DATA|RSET)\)\s*$")
_SPACES = re.compile(r"\s+")
_EMPTY_LEAD = re.compile(r"^[\s:;,-]+")
_CODE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<enh>[245]\.\d{1,3}\.\d{1,3})?(?P<rest>.*)$")


def reason_key(error: str) -> str:
    """A short, address-free summary of `error` for grouping (`status: reply` stays first)."""
    text = error.split("\n", 1)[0]
    text = _BRACKETED.sub("", text)
    text = _BARE.sub("", text)
    text = _STAGE.sub("", text)
    prefix, sep, reply = text.partition(": ")
    if sep and _CODE.match(reply.strip()):
        text = f"{prefix}: {_reply(reply.strip())}"
    elif _CODE.match(text.strip()):
        text = _reply(text.strip())
    text = _SPACES.sub(" ", text).strip()
    text = text.replace(" :", ":").replace(": :", ":")
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1].rstrip() + "…"
    return text


def _reply(reply: str) -> str:
    """`550 5.1.1 : Recipient address rejected: User unknown` -> `550 5.1.1 Recipient
    address rejected: User unknown`."""
    m = _CODE.match(reply)
    if m is None:  # pragma: no cover - callers checked
        return reply
    rest = _EMPTY_LEAD.sub("", m["rest"]).strip()
    head = m["code"] + (f" {m['enh']}" if m["enh"] else "")
    return f"{head} {rest}".strip()
