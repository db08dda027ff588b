"""`file:DIR`: each message becomes `DIR/<key>.eml`, for previews and the no-server quick start."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from scheduler.mail.envelope import Outcome, Outgoing, Status


class FileTransport:
    """Writes each message whole or not at all (temporary file, then rename).

    A retry of the same delivery overwrites its file, so the directory holds one file per
    delivery. Files are not fsync'ed: this is an outbox to look at, not a mail queue.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._made = False

    def send(self, message: Outgoing) -> Outcome:
        path = self.directory / f"{message.key}.eml"
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
