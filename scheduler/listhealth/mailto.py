"""The mailto of `List-Unsubscribe` (RFC 2369), and reading the requests sent to it.

The subject carries the same signed token as the one-click link (`unsubscribe <token>`), so
a request is matched by the token, never by its From header, which anyone can write.
"""

from __future__ import annotations

import re

SUBJECT_WORD = "unsubscribe"
# The unsubscribe link's token: base64url payload "." base64url MAC (scheduler/tokens.py).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{20,}")


def mailto_uri(address: str, unsubscribe_url: str) -> str:
    """`mailto:ADDRESS?subject=unsubscribe%20TOKEN`, TOKEN taken from the one-click URL."""
    link_token = unsubscribe_url.rstrip("/").rsplit("/", 1)[-1]
    return f"mailto:{address}?subject={SUBJECT_WORD}%20{link_token}"


def subject_tokens(subject: str) -> list[str]:
    """Candidate tokens in a request's subject (a reply may add `Re:` or quote it)."""
    return _TOKEN.findall(subject)
