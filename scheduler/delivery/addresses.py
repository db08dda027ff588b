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
from collections.abc import Callable

from scheduler.audience.address import needs_smtputf8
from scheduler.audience.csvfile import CsvResult, RowProblem, SubscriberRow
from scheduler.channels import get_channel_class
from scheduler.config import secrets
from scheduler.config.project import Project
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


def refuse_undeliverable(
    project: Project,
    result: CsvResult,
    *,
    ask: Callable[[Project], list[str]] = servers_without_smtputf8,
) -> CsvResult:
    """`result` without the rows no email channel of the project can deliver, which become
    problems (warnings) naming the channel and what to do."""
    utf8_rows = [r for r in result.rows if needs_smtputf8(r.email)]
    if not utf8_rows:
        return result
    refusing = ask(project)
    if not refusing:
        return result
    channels = ", ".join(refusing)
    problems = [
        RowProblem(
            row=r.row,
            column="email",
            reason=(
                f"{r.email!r} has non-ASCII characters before the '@'; the mail server of "
                f"channel {channels} does not offer SMTPUTF8, so it could never be delivered"
            ),
            hint="ask the subscriber for another address, or use a server that offers SMTPUTF8",
        )
        for r in utf8_rows
    ]
    kept: list[SubscriberRow] = [r for r in result.rows if not needs_smtputf8(r.email)]
    return CsvResult(kept, sorted([*result.problems, *problems], key=lambda p: p.row))
