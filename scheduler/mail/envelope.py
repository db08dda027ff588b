"""What a transport takes and gives back: one ready message, one outcome, the `Transport` contract.

A transport takes one complete message at a time and says what happened to it as an `Outcome`;
it never raises for a failure that concerns one message, so a batch keeps going and the caller
records every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["sent", "transient", "permanent", "bounced", "unavailable"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one recipient, ready to send."""

    key: int  # the delivery id in the ledger
    envelope_from: str  # "" for the null sender
    recipient: str
    data: bytes  # complete RFC 5322 message, CRLF or LF line endings
    # The composer vouches that `data` is already as it goes on the wire: CRLF line endings
    # only, ending in CRLF, and no line starting with "." (MessageFactory's output, signed
    # or not). The transport then skips its line-ending and dot checks, which cost as much
    # as composing (two scans of each message's bytes).
    wire: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message.

    `bounced` means the server refused the recipient's address itself (5.1.x on RCPT): the
    caller marks the address bounced. `transient` is worth retrying later; `permanent` is not.
    `unavailable` says nothing about the message: the server could not be reached or is
    closing the connection (refused, timed out, TLS failed, `421`), and nothing was sent; the
    caller waits for the server, without counting it against the message.
    """

    key: int
    status: Status
    response: str  # the server's reply, or what went wrong on the way to it


class Transport(Protocol):
    """Sends messages one at a time; not thread-safe (give each thread its own)."""

    def send(self, message: Outgoing) -> Outcome:
        """Send one message and classify the result; never raises for a per-message failure."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent)."""
        ...
