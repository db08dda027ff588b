"""Which imported addresses the project's mail servers can deliver to.

An address whose domain is internationalized (`user@exämple.org`) is always deliverable: it
is sent to the IDNA form (`user@xn--exmple-cua.org`). One whose part before '@' is not ASCII
(`ünï@exämple.org`) needs SMTPUTF8 (RFC 6531) from the server; when an email channel's
server does not offer it, the row is refused at import with a warning that says so, rather
than imported and failed on the day. The server is asked (EHLO) only when a file has such
an address, once per import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from scheduler.audience.address import needs_smtputf8
from scheduler.audience.csvfile import RowProblem, SubscriberRow
from scheduler.channels import get_channel_class
from scheduler.config import secrets
from scheduler.config.project import Project
from scheduler.errors import Diagnostic
from scheduler.mail.probe import offers_smtputf8

log = logging.getLogger(__name__)


def servers_without_smtputf8(project: Project) -> list[str]:
    """The email channels whose server does not offer SMTPUTF8 (asked now). A server that
    cannot be asked is not listed: the send will say, per message, if it refuses."""
    refusing = []
    for name, channel in project.config.channels.items():
        if get_channel_class(channel.type).kind != "email":
            continue
        raw = str(dict(channel.model_extra or {}).get("url", ""))
        try:
            url = secrets.resolve(raw)
        except Exception:
            continue
        answer = offers_smtputf8(url)
        if answer is None:
            log.warning(
                "channel %s: could not ask its server about SMTPUTF8; addresses with a "
                "non-ASCII part before '@' are imported and may fail when sent",
                name,
            )
        elif not answer:
            refusing.append(name)
    return refusing


class DeliverableRows:
    """The valid rows of a list file that the project's mail servers can deliver, yielded
    as `items` (from `iter_csv`) are read, so an import can merge while the file is still
    being read. The file's own problems and the refused rows (as warnings naming the
    channel and what to do) are kept in `problems`, in file order; `rows` counts the
    rows yielded."""

    def __init__(
        self,
        project: Project,
        items: Iterable[SubscriberRow | RowProblem],
        *,
        ask: Callable[[Project], list[str]] = servers_without_smtputf8,
    ) -> None:
        self._project = project
        self._items = items
        self._ask = ask
        self._refusing: list[str] | None = None  # asked at the first such address
        self.problems: list[RowProblem] = []
        self.rows = 0

    def __iter__(self) -> Iterator[SubscriberRow]:
        keep_problem = self.problems.append
        for item in self._items:
            if isinstance(item, RowProblem):
                keep_problem(item)
            elif needs_smtputf8(item.email) and self._refused(item):
                continue
            else:
                self.rows += 1
                yield item

    def diagnostics(self, file: str) -> list[Diagnostic]:
        return [p.to_diagnostic(file) for p in self.problems]

    def _refused(self, row: SubscriberRow) -> bool:
        if self._refusing is None:
            self._refusing = self._ask(self._project)
        if not self._refusing:
            return False
        channels = ", ".join(self._refusing)
        self.problems.append(
            RowProblem(
                row=row.row,
                column="email",
                reason=(
                    f"{row.email!r} has non-ASCII characters before the '@'; the mail server of "
                    f"channel {channels} does not offer SMTPUTF8, so it could never be delivered"
                ),
                hint="ask the subscriber for another address, or use a server that offers SMTPUTF8",
            )
        )
        return True
