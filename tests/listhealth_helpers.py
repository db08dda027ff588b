"""A sent May Day occurrence with VERP return paths, and bounce-mailbox samples filled in
for its messages."""

from __future__ import annotations

import email
import itertools
from dataclasses import dataclass
from pathlib import Path

from conftest import ProjectFactory
from delivery_helpers import EMAIL_ONLY, add_subscribers, context, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.config.project import Project, load_project
from scheduler.delivery.fire import fire

SAMPLES = Path(__file__).resolve().parent / "mail_samples"
RETURN_PATH = "bounces@bounces.example.org"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Sent:
    """One message as the SMTP server received it."""

    recipient: str
    return_path: str  # MAIL FROM
    message_id: str
    list_unsubscribe: str

    @property
    def link_token(self) -> str:
        url = self.list_unsubscribe.split(">", 1)[0].lstrip("<")
        return url.rsplit("/", 1)[-1]


def health_project(make_project: ProjectFactory, smtp_url: str, *, settings: str = "") -> Project:
    text = EMAIL_ONLY.replace(
        'url: "file:outbox"', f'url: "{smtp_url}", return_path: {RETURN_PATH}'
    ).replace(
        "  timezone: Europe/Madrid\n",
        "  timezone: Europe/Madrid\n  unsubscribe_mailto: unsubscribe@example.org\n",
    )
    if settings:
        text += "settings:\n" + settings
    return load_project(make_project(text, members_csv="email\n"))


def send_may_day(
    project: Project,
    engine: Engine,
    server: SmtpTestServer,
    n: int = 6,
    *,
    year: int = 2030,
    add: bool = True,
    expect_sent: int | None = None,
) -> dict[str, Sent]:
    """Send May Day `year` to `n` subscribers (person0@example.org, ..., added unless `add`
    is False); its messages by recipient."""
    if add:
        add_subscribers(engine, n)
    before = len(server.messages)
    ctx = context(project, engine)
    report = fire(ctx, may_day(project, year))
    ctx.close()
    assert report.result.sent == (n if expect_sent is None else expect_sent)
    sent = {}
    for m in list(server.messages)[before:]:
        msg = email.message_from_bytes(m.data)
        (rcpt,) = m.rcpt_tos
        sent[rcpt] = Sent(
            recipient=rcpt,
            return_path=m.mail_from,
            message_id=str(msg["Message-ID"]),
            list_unsubscribe=" ".join(str(msg["List-Unsubscribe"]).split()),
        )
    return sent


def sample(name: str, sent: Sent | None = None, **extra: str) -> bytes:
    """A sample from tests/mail_samples with its placeholders filled for `sent`."""
    text = (SAMPLES / name).read_text(encoding="utf-8")
    values = {"ID": str(next(_ids)), **extra}
    if sent is not None:
        values.setdefault("RETURN_PATH", sent.return_path)
        values.setdefault("RECIPIENT", sent.recipient)
        values.setdefault("MESSAGE_ID", sent.message_id)
        values.setdefault("LIST_UNSUBSCRIBE", sent.list_unsubscribe)
        values.setdefault("TOKEN", sent.link_token)
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    assert "@@" not in text, f"{name}: unfilled placeholder"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
