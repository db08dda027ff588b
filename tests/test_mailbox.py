"""The bounce mailbox: VERP return paths, DSNs, ARF complaints and mailto unsubscribes read
from a real Dovecot (IMAPS and POP3S), each applied once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ProjectFactory
from dovecot_server import Dovecot
from listhealth_helpers import RETURN_PATH, Sent, health_project, sample, send_may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.config.project import Project
from scheduler.listhealth import events, mailbox, verp
from scheduler.listhealth.mailbox import MailboxUrl, classify
from scheduler.store.schema import HealthKind
from scheduler.store.subscribers import is_suppressed, memberships_of

KEY = "test-secret-key-for-list-health"


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_SECRET_KEY", KEY)


@pytest.fixture
def sent(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> tuple[Project, dict[str, Sent]]:
    project = health_project(make_project, smtp_server.url)
    return project, send_may_day(project, store_engine, smtp_server)


def person(i: int) -> str:
    return f"person{i}@example.org"


def run_mailbox(project: Project, engine: Engine, url: str, cafile: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update(
        {
            "SCHEDULER_SECRET_KEY": KEY,
            "SCHEDULER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "SCHEDULER_MAILBOX_URL": url,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "scheduler", "mailbox", "--cafile", cafile, "--json"],
        cwd=project.base_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = json.loads(done.stdout)
    return counts


def test_every_message_has_its_own_signed_return_path(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine
) -> None:
    _project, by_rcpt = sent
    paths = {s.return_path for s in by_rcpt.values()}
    assert len(paths) == len(by_rcpt)
    local, domain = RETURN_PATH.split("@")
    for s in by_rcpt.values():
        assert s.return_path.startswith(local + "+d") and s.return_path.endswith("@" + domain)
        (delivery_id,) = verp.delivery_ids(s.return_path)
        assert verp.return_path(delivery_id, RETURN_PATH) == s.return_path
    # Another key's token, or a changed id, is not ours.
    one = next(iter(paths))
    assert verp.delivery_ids(one, key=b"another key") == []
    forged = one.replace("+d", "+d1", 1)
    assert verp.delivery_ids(forged) == []
    # The mailto carries the one-click link's token in its subject.
    s = by_rcpt[person(0)]
    assert f"<mailto:unsubscribe@example.org?subject=unsubscribe%20{s.link_token}>" in (
        s.list_unsubscribe
    )


def test_reading_the_mailbox_over_imaps_applies_each_report_once(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine, dovecot: Dovecot
) -> None:
    project, by_rcpt = sent
    messages = [
        sample("dsn-postfix-hard.eml", by_rcpt[person(0)]),
        sample("dsn-mailbox-full.eml", by_rcpt[person(1)]),
        sample("dsn-exim-delayed.eml", by_rcpt[person(1)]),  # a warning, not a bounce
        sample("arf-abuse.eml", by_rcpt[person(2)]),
        sample("unsubscribe-request.eml", by_rcpt[person(3)]),
        sample("unsubscribe-forged.eml", by_rcpt[person(4)]),
        sample("out-of-office.eml", by_rcpt[person(5)]),
        sample("not-a-report.eml"),
    ]
    for raw in messages:
        dovecot.append(raw)

    counts = run_mailbox(project, store_engine, dovecot.url("imaps"), dovecot.cafile)
    assert counts == {
        "hard_bounce": 1,
        "soft_bounce": 1,
        "complaint": 1,
        "unsubscribe": 1,
        "ignored": 2,
        "unparseable": 2,
        "already_processed": 0,
        "suppressed": 2,
    }
    assert is_suppressed(store_engine, person(0))
    assert memberships_of(store_engine, person(0)) == {"members": "bounced"}
    assert not is_suppressed(store_engine, person(1))  # one soft bounce is only counted
    assert memberships_of(store_engine, person(1)) == {"members": "active"}
    assert is_suppressed(store_engine, person(2))
    assert memberships_of(store_engine, person(2)) == {"members": "complained"}
    assert memberships_of(store_engine, person(3)) == {"members": "unsubscribed"}
    assert not is_suppressed(store_engine, person(3))
    # A From header alone changes nothing.
    assert memberships_of(store_engine, person(4)) == {"members": "active"}

    # What was understood moved to Processed; the rest stays, flagged for a person.
    processed = dovecot.folder("Processed")
    assert sorted(raw for raw, _ in processed) == sorted(messages[i] for i in (0, 1, 2, 3, 4, 6))
    kept = dovecot.folder("INBOX")
    assert sorted(raw for raw, _ in kept) == sorted([messages[5], messages[7]])
    assert all({"\\Flagged", mailbox.UNPARSED_KEYWORD} <= flags for _, flags in kept)

    # Read again (and a copy of the hard bounce delivered twice): nothing changes.
    dovecot.append(messages[0])
    again = run_mailbox(project, store_engine, dovecot.url("imaps"), dovecot.cafile)
    assert again["already_processed"] == 3
    assert sum(again[k.value] for k in HealthKind) == 0
    assert memberships_of(store_engine, person(3)) == {"members": "unsubscribed"}
    assert len(dovecot.folder("INBOX")) == 2


def test_pop3s_leaves_the_messages_and_a_second_read_changes_nothing(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine, dovecot: Dovecot
) -> None:
    project, by_rcpt = sent
    dovecot.append(sample("dsn-postfix-hard.eml", by_rcpt[person(0)]))
    dovecot.append(sample("arf-redacted.eml", by_rcpt[person(1)]))
    first = run_mailbox(project, store_engine, dovecot.url("pop3s"), dovecot.cafile)
    assert (first["hard_bounce"], first["complaint"]) == (1, 1)
    # The redacted report named nobody; the returned List-Unsubscribe link's token did.
    assert memberships_of(store_engine, person(1)) == {"members": "complained"}
    second = run_mailbox(project, store_engine, dovecot.url("pop3s"), dovecot.cafile)
    assert second["already_processed"] == 2 and second["hard_bounce"] == 0
    assert len(dovecot.folder("INBOX")) == 2


def test_soft_bounces_of_different_messages_suppress_at_the_configured_score(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> None:
    project = health_project(
        make_project, smtp_server.url, settings="  soft_bounce_limit: 3\n  soft_bounce_days: 30\n"
    )
    years = [send_may_day(project, store_engine, smtp_server, n=2)]
    years += [
        send_may_day(project, store_engine, smtp_server, n=2, year=y, add=False)
        for y in (2031, 2032)
    ]

    def soft(sent: Sent) -> events.Applied:
        report = classify(store_engine, sample("dsn-mailbox-full.eml", sent))
        assert report.kind == HealthKind.SOFT_BOUNCE
        return events.apply(store_engine, project.config, report)

    # The same message bouncing twice (two reports) counts once.
    assert not soft(years[0][person(0)]).suppressed
    assert not soft(years[0][person(0)]).suppressed
    assert not soft(years[1][person(0)]).suppressed
    assert memberships_of(store_engine, person(0)) == {"members": "active"}
    assert soft(years[2][person(0)]).suppressed  # the third message
    assert memberships_of(store_engine, person(0)) == {"members": "bounced"}
    assert is_suppressed(store_engine, person(0))
    assert memberships_of(store_engine, person(1)) == {"members": "active"}


def test_non_standard_bounces_and_forged_tokens(
    sent: tuple[Project, dict[str, Sent]], store_engine: Engine
) -> None:
    _project, by_rcpt = sent
    qmail = classify(store_engine, sample("bounce-qmail.eml", by_rcpt[person(0)]))
    assert (qmail.kind, qmail.detail) == (HealthKind.HARD_BOUNCE, "bounce non-standard")
    assert qmail.delivery_id is not None

    # A bounce to a return path signed with another key names no delivery of ours.
    fake_path = verp.return_path(qmail.delivery_id, RETURN_PATH, key=b"not our key")
    forged = classify(
        store_engine, sample("dsn-postfix-hard.eml", by_rcpt[person(1)], RETURN_PATH=fake_path)
    )
    assert forged.kind == HealthKind.UNPARSEABLE

    # A mailto request with a token for someone else's address is refused (the token is
    # signed over the address), and so is a made-up token.
    s = by_rcpt[person(2)]
    tampered = s.link_token[:-3] + ("AAA" if not s.link_token.endswith("AAA") else "BBB")
    bad = classify(store_engine, sample("unsubscribe-request.eml", s, TOKEN=tampered))
    assert bad.kind == HealthKind.UNPARSEABLE
    good = classify(store_engine, sample("unsubscribe-request.eml", s))
    assert (good.kind, good.lists) == (HealthKind.UNSUBSCRIBE, ("members",))

    not_spam = classify(store_engine, sample("arf-not-spam.eml", s))
    assert not_spam.kind == HealthKind.IGNORED


def test_mailbox_urls_are_checked() -> None:
    url = MailboxUrl.parse("imaps://bounces@mail.example.org/INBOX?processed=Done", password="p")
    assert (url.port, url.folder, url.processed, url.password) == (993, "INBOX", "Done", "p")
    with pytest.raises(mailbox.MailboxError, match="password"):
        MailboxUrl.parse("pop3s://bounces@mail.example.org")
    with pytest.raises(mailbox.MailboxError, match="cannot read") as e:
        MailboxUrl.parse("http://u:secret@mail.example.org")
    assert "secret" not in str(e.value)


def test_a_server_with_an_untrusted_certificate_is_refused(dovecot: Dovecot) -> None:
    url = MailboxUrl.parse(dovecot.url("imaps"))
    # The system's CAs do not know the test certificate.
    with pytest.raises(mailbox.MailboxError, match="cannot reach"), mailbox.open_box(url):
        pass
