"""The signed links the pages accept, on top of `scheduler.tokens`.

Unsubscribe and preference links are made by `Renderer.recipient_links` (data
{"s": subscriber id, "e": address lower-cased, "l": "list,list"}). Confirmation links are made
here and carry the whole sign-up, so nothing about a person is stored before they confirm.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from scheduler.tokens import BadToken, sign, verify

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
# A confirmation link older than this is refused; the person can ask again.
CONFIRM_VALID_FOR = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class SignUp:
    email: str
    name: str | None
    language: str
    list_name: str
    requested_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SubscriberLink:
    subscriber_id: Any  # checked against the store, with the address, before any use
    email: str
    lists: tuple[str, ...]
    occurrence: str | None = None  # unsubscribe links: the mailing it came in


def confirm_token(signup: SignUp, key: bytes) -> str:
    data = {
        "e": signup.email,
        "n": signup.name or "",
        "g": signup.language,
        "l": signup.list_name,
        "t": int(signup.requested_at.timestamp()),
    }
    return sign(CONFIRM, data, key)


def read_confirm_token(token: str, key: bytes, *, now: float | None = None) -> SignUp:
    data = verify(CONFIRM, token, key)
    try:
        issued = int(data["t"])
        signup = SignUp(
            email=str(data["e"]),
            name=str(data["n"]) or None,
            language=str(data["g"]),
            list_name=str(data["l"]),
            requested_at=dt.datetime.fromtimestamp(issued, dt.UTC),
        )
    except (KeyError, TypeError, ValueError):
        raise BadToken("confirmation token lacks a field") from None
    age = (now if now is not None else time.time()) - issued
    if age > CONFIRM_VALID_FOR.total_seconds() or age < -300:
        raise BadToken("confirmation link expired")
    return signup


def read_subscriber_token(purpose: str, token: str, key: bytes) -> SubscriberLink:
    data = verify(purpose, token, key)
    email, lists = data.get("e"), data.get("l")
    if not isinstance(email, str) or not isinstance(lists, str):
        raise BadToken("token lacks an address or lists")
    names = tuple(n for n in (part.strip() for part in lists.split(",")) if n)
    occurrence = data.get("o")
    return SubscriberLink(
        subscriber_id=data.get("s"),
        email=email,
        lists=names,
        occurrence=occurrence if isinstance(occurrence, str) else None,
    )
