"""`file:DIR`: each message becomes an `.eml` file in DIR, for the no-server quick start.

Names sort by the time the message was written and never begin with `-`:
`20270501T050000.123456Z-delivery42.eml` (a ledger delivery) or `…-letter17647….eml` (a
confirmation letter of the web pages, whose keys are negative).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from pathlib import Path

from scheduler.mail.envelope import Outcome, Outgoing, Status


def file_name(key: int, when: dt.datetime) -> str:
    kind = "letter" if key < 0 else "delivery"
    return f"{when.astimezone(dt.UTC):%Y%m%dT%H%M%S.%fZ}-{kind}{abs(key)}.eml"


class FileTransport:
    """Writes each message whole or not at all (temporary file, then rename).

    A message is written only after the one before it was, so a retry after a failed write
    leaves one file; a delivery re-sent after a crash is a second file, as a mail server
    would receive a second copy (with the same Message-ID). Files are not fsync'ed: this is
    an outbox to look at, not a mail queue.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._made = False

    def send(self, message: Outgoing) -> Outcome:
        path = self.directory / file_name(message.key, dt.datetime.now(dt.UTC))
        temporary = self.directory / f".{message.key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            if not self._made:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._made = True
            temporary.write_bytes(message.data)
            os.replace(temporary, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            status: Status = "permanent" if isinstance(e, PermissionError) else "transient"
            return Outcome(message.key, status, f"cannot write {path}: {e.strerror or e}")
        return Outcome(message.key, "sent", f"stored {path}")

    def close(self) -> None:
        pass
