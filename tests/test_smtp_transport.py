"""Sending ready-made messages over SMTP (a real aiosmtpd server) and into .eml files."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from smtp_server import SmtpTestServer

from scheduler.errors import PermanentSendError, SecretError
from scheduler.mail.filebox import FileTransport
from scheduler.mail.ratelimit import LocalRateLimiter
from scheduler.mail.smtp import SmtpTransport, classify, wire_payload
from scheduler.mail.transport import (
    Outgoing,
    Transport,
    TransportPool,
    open_transport,
    parse_smtp_url,
)

SENDER = "news@example.org"


def message(key: int, recipient: str | None = None, body: str = "Hello.\n") -> Outgoing:
    to = recipient or f"r{key}@example.org"
    data = (
        f"From: Test Org <{SENDER}>\nTo: {to}\nSubject: Statement {key}\n"
        f"Message-ID: <{key}@test.example.org>\n\n{body}"
    ).encode()
    return Outgoing(key=key, envelope_from=SENDER, recipient=to, data=data)


@pytest.fixture
def transport(smtp_server: SmtpTestServer) -> Iterator[Transport]:
    t = open_transport(smtp_server.url)
    yield t
    t.close()


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_message_arrives_intact(pipelining: bool) -> None:
    body = ".starts with a dot\n..two dots\nnon-ASCII: Jornada Internacional — ¡sí!\n.\nend\n"
    sent = message(1, body=body)
    with SmtpTestServer(pipelining=pipelining) as server:
        t = open_transport(server.url)
        outcome = t.send(sent)
        t.close()
    assert outcome.status == "sent"
    assert outcome.response.startswith("250 2.0.0 Ok: queued as")
    (got,) = server.messages
    assert got.data == sent.data.replace(b"\n", b"\r\n")
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ("r1@example.org",)
    assert got.message_id == "<1@test.example.org>"


def test_wire_payload_fixes_line_endings_and_dots() -> None:
    assert wire_payload(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd\r\n.\r\n"
    assert wire_payload(b".x\r\n.\r\n") == b"..x\r\n..\r\n.\r\n"
    assert wire_payload(b"ok\r\n") == b"ok\r\n.\r\n"


def test_one_connection_carries_many_messages(
    smtp_server: SmtpTestServer, transport: Transport
) -> None:
    outcomes = [transport.send(message(n)) for n in range(100)]
    assert {o.status for o in outcomes} == {"sent"}
    assert len(smtp_server.messages) == 100
    assert smtp_server.connections == 1


def test_pool_sends_each_message_once_over_parallel_connections(
    smtp_server: SmtpTestServer,
) -> None:
    with TransportPool(lambda: open_transport(smtp_server.url), connections=4) as pool:
        outcomes = list(pool.send_all(message(n) for n in range(400)))
    assert sorted(o.key for o in outcomes) == list(range(400))
    assert {o.status for o in outcomes} == {"sent"}
    counts = smtp_server.count_by_recipient()
    assert len(counts) == 400 and set(counts.values()) == {1}
    assert smtp_server.connections == 4
    assert smtp_server.wait_all_closed()  # close() said QUIT on every connection


def test_pool_keeps_connections_between_batches(smtp_server: SmtpTestServer) -> None:
    with TransportPool(lambda: open_transport(smtp_server.url), connections=2) as pool:
        for batch in range(3):
            outcomes = list(pool.send_all(message(batch * 100 + n) for n in range(50)))
            assert {o.status for o in outcomes} == {"sent"}
    assert len(smtp_server.messages) == 150
    assert smtp_server.connections == 2


def test_leaving_the_loop_early_stops_the_workers(smtp_server: SmtpTestServer) -> None:
    before = threading.active_count()
    taken = 0

    def messages() -> Iterator[Outgoing]:
        nonlocal taken
        for n in range(100_000):
            taken += 1
            yield message(n)

    pool = TransportPool(lambda: open_transport(smtp_server.url), connections=4)
    outcomes = pool.send_all(messages())
    assert isinstance(outcomes, Generator)
    first = [next(outcomes) for _ in range(5)]
    outcomes.close()
    assert threading.active_count() == before
    assert {o.status for o in first} == {"sent"}
    assert taken <= 5 + 4 * 4 + 4  # read lazily, a few messages per connection ahead
    pool.close()
    assert smtp_server.wait_all_closed()


def test_rate_limited_pool_spaces_messages(smtp_server: SmtpTestServer) -> None:
    limiter = LocalRateLimiter(per_second=50)
    started = time.monotonic()
    with TransportPool(lambda: open_transport(smtp_server.url), 3, limiter) as pool:
        outcomes = list(pool.send_all(message(n) for n in range(10)))
    assert len(outcomes) == 10
    assert time.monotonic() - started >= 9 / 50


def test_temporary_failure_is_transient_then_succeeds_on_retry(
    smtp_server: SmtpTestServer, transport: Transport
) -> None:
    smtp_server.fail_next_data("451 4.3.0 Try again later", times=1)
    smtp_server.fail_next_rcpt("450 4.2.1 Mailbox busy", times=1)
    first = transport.send(message(1))
    assert (first.status, first.response) == ("transient", "450 4.2.1 Mailbox busy (after RCPT)")
    second = transport.send(message(1))
    assert (second.status, second.response) == ("transient", "451 4.3.0 Try again later")
    third = transport.send(message(1))
    assert third.status == "sent"
    assert smtp_server.count_by_recipient() == {"r1@example.org": 1}
    assert smtp_server.connections == 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_unknown_mailbox_bounces_and_the_connection_stays_usable(pipelining: bool) -> None:
    gone = "nobody@example.org"
    with SmtpTestServer(reject_rcpt={gone: "550 5.1.1 No such user"}, pipelining=pipelining) as s:
        t = open_transport(s.url)
        bounced = t.send(message(1, gone))
        after = t.send(message(2))
        t.close()
    assert bounced.status == "bounced"
    assert bounced.response.startswith("550 5.1.1 No such user")
    assert after.status == "sent"
    assert [m.rcpt_tos for m in s.messages] == [("r2@example.org",)]
    assert s.connections == 1


@pytest.mark.parametrize(
    ("stage", "reply", "status"),
    [
        ("RCPT", "550 5.7.1 Relaying denied", "permanent"),
        ("RCPT", "550 User unknown", "bounced"),  # no enhanced code: read the text
        ("RCPT", "553 5.1.3 Bad recipient address syntax", "bounced"),
        ("RCPT", "550 5.1.8 Bad sender's system address", "permanent"),
        ("RCPT", "552 5.2.2 Mailbox full", "permanent"),
        ("DATA", "554 5.6.0 Message rejected as spam", "permanent"),
        ("DATA", "550 5.1.1 No such user", "permanent"),  # a bounce only on RCPT
    ],
)
def test_other_rejections(
    smtp_server: SmtpTestServer, transport: Transport, stage: str, reply: str, status: str
) -> None:
    if stage == "RCPT":
        smtp_server.fail_next_rcpt(reply)
    else:
        smtp_server.fail_next_data(reply)
    outcome = transport.send(message(1))
    assert outcome.status == status
    assert outcome.response.startswith(reply)
    assert transport.send(message(2)).status == "sent"


def test_classification_of_replies() -> None:
    assert classify("DATA", 250, b"2.0.0 Ok") == "sent"
    assert classify("MAIL", 421, b"4.7.0 closing") == "transient"
    assert classify("MAIL", 550, b"5.1.1 sender unknown") == "permanent"
    assert classify("RCPT", 551, b"User not local") == "permanent"
    assert classify("RCPT", 550, b"Recipient address rejected: User unknown in table") == (
        "bounced"
    )
    assert classify("RCPT", -1, b"garbled") == "transient"


def test_dropped_connection_mid_data_is_transient_and_the_next_send_reconnects(
    smtp_server: SmtpTestServer, transport: Transport
) -> None:
    assert transport.send(message(1)).status == "sent"
    smtp_server.drop_next_data()
    dropped = transport.send(message(2))
    assert dropped.status == "transient"
    assert "connection" in dropped.response.lower()
    assert transport.send(message(2)).status == "sent"
    assert [m.rcpt_tos for m in smtp_server.dropped] == [("r2@example.org",)]
    assert smtp_server.count_by_recipient() == {"r1@example.org": 1, "r2@example.org": 1}
    assert smtp_server.connections == 2


def test_a_connection_the_server_closed_is_reopened_once_before_the_message(
    smtp_server: SmtpTestServer, transport: Transport
) -> None:
    assert transport.send(message(1)).status == "sent"
    smtp_server.fail_next_rcpt("421 4.4.2 Idle too long, closing")
    assert transport.send(message(2)).status == "sent"
    assert smtp_server.connections == 2


def test_server_down_is_unavailable_with_a_readable_reason(smtp_server: SmtpTestServer) -> None:
    url = smtp_server.url
    smtp_server.stop()
    outcome = open_transport(url, timeout=5).send(message(1))
    assert outcome.status == "unavailable"  # the server's state, not the message's
    assert url.removeprefix("smtp://") in outcome.response
    assert "refused" in outcome.response.lower()


PASSWORD = "s3cret p@ss:/?%41"


def test_auth_with_a_password_from_the_environment() -> None:
    with SmtpTestServer(credentials={SENDER: PASSWORD}) as server:
        url = f"smtp://news%40example.org:${{SMTP_PASSWORD}}@127.0.0.1:{server.port}"
        t = open_transport(url, env={"SMTP_PASSWORD": PASSWORD})
        assert PASSWORD not in repr(t)
        outcomes = [t.send(message(n)) for n in range(3)]
        t.close()
    assert [o.status for o in outcomes] == ["sent"] * 3
    assert server.logins == [(SENDER, True)]
    assert len(server.messages) == 3


def test_auth_with_the_whole_url_in_the_environment() -> None:
    with SmtpTestServer(credentials={"u": PASSWORD}) as server:
        # A URL from the environment is a URL: special characters percent-encoded.
        env = {"SMTP_URL": f"smtp://u:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}"}
        t = open_transport("${SMTP_URL}", env=env)
        assert t.send(message(1)).status == "sent"
        t.close()


def test_a_wrong_password_is_permanent_and_never_shown() -> None:
    wrong = "not-the-password"
    with SmtpTestServer(credentials={SENDER: PASSWORD}) as server:
        url = f"smtp://{SENDER}:${{SMTP_PASSWORD}}@127.0.0.1:{server.port}"
        t = open_transport(url, env={"SMTP_PASSWORD": wrong})
        outcome = t.send(message(1))
        t.close()
    assert outcome.status == "permanent"
    assert "535 5.7.8 Authentication credentials invalid" in outcome.response
    assert outcome.response.startswith("logging in to")
    assert f"{SENDER}:***@127.0.0.1:{server.port}" in outcome.response
    assert wrong not in outcome.response and wrong not in repr(t)
    assert not server.messages


def test_unset_password_variable_names_the_variable() -> None:
    with pytest.raises(SecretError, match="SMTP_PASSWORD"):
        open_transport("smtp://u:${SMTP_PASSWORD}@127.0.0.1:25", env={})


def test_url_errors_do_not_show_the_password() -> None:
    with pytest.raises(PermanentSendError) as caught:
        open_transport("smtp://u:${P}@127.0.0.1:99999", env={"P": PASSWORD})
    assert PASSWORD not in str(caught.value)
    assert "u:***@" in str(caught.value)
    with pytest.raises(PermanentSendError, match="starttls"):
        open_transport("smtp://127.0.0.1?starttls=maybe")


def test_parse_smtp_url() -> None:
    e = parse_smtp_url("smtp://a%40b.org:${P}@mail.example.org?starttls=require", {"P": "x@y"})
    assert (e.host, e.port, e.username, e.password, e.starttls) == (
        "mail.example.org",
        25,
        "a@b.org",
        "x@y",
        "require",
    )
    assert e.display() == "smtp://a@b.org:***@mail.example.org:25?starttls=require"
    assert "x@y" not in repr(e)
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    token = parse_smtp_url("smtp://${TOKEN}@mail.example.org:587", {"TOKEN": "t0ken"})
    assert token.username == "t0ken"
    assert token.display() == "smtp://${TOKEN}@mail.example.org:587"
    assert parse_smtp_url("smtp://[::1]:2525").host == "::1"


def test_starttls_is_used_when_offered() -> None:
    with SmtpTestServer(tls="starttls", credentials={"u": PASSWORD}) as server:
        url = f"smtp://u:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}?starttls=require"
        t = SmtpTransport(url, ssl_context=server.client_ssl_context())
        assert t.send(message(1)).status == "sent"
        t.close()
    assert len(server.messages) == 1


def test_starttls_with_an_untrusted_certificate_is_permanent() -> None:
    with SmtpTestServer(tls="starttls") as server:
        outcome = open_transport(server.url).send(message(1))
    assert outcome.status == "permanent"
    assert "certificate" in outcome.response


def test_implicit_tls() -> None:
    with SmtpTestServer(tls="implicit") as server:
        assert server.url.startswith("smtps://")
        t = open_transport(server.url, ssl_context=server.client_ssl_context())
        assert t.send(message(1)).status == "sent"
        t.close()
    assert len(server.messages) == 1


def test_starttls_required_but_not_offered_is_permanent(smtp_server: SmtpTestServer) -> None:
    outcome = open_transport(smtp_server.url + "?starttls=require").send(message(1))
    assert outcome.status == "permanent"
    assert "does not offer STARTTLS" in outcome.response
    assert not smtp_server.messages


def test_file_transport_writes_eml_files(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    t = open_transport(f"file:{outbox}")
    assert isinstance(t, FileTransport)
    outcomes = [t.send(message(n)) for n in (8, 7, -3)]
    names = sorted(p.name for p in outbox.iterdir())  # no temporary left
    # Sorted by when they were written, never starting with "-" (a letter's negative key).
    assert [n.split("-", 1)[1] for n in names] == ["delivery8.eml", "delivery7.eml", "letter3.eml"]
    assert all(n[0].isdigit() for n in names)
    assert [o.response for o in outcomes] == [f"stored {outbox / n}" for n in names]
    assert (outbox / names[1]).read_bytes() == message(7).data


def test_file_transport_in_a_pool(tmp_path: Path) -> None:
    with TransportPool(lambda: FileTransport(tmp_path), connections=3) as pool:
        outcomes = list(pool.send_all(message(n) for n in range(30)))
    assert {o.status for o in outcomes} == {"sent"}
    assert len(list(tmp_path.glob("*.eml"))) == 30


def _stream(transport: SmtpTransport, messages: list[Outgoing]) -> list[tuple[int, str, str]]:
    todo = list(reversed(messages))
    outcomes: list[tuple[int, str, str]] = []
    transport.send_stream(
        lambda block: todo.pop() if todo else None,
        lambda o: outcomes.append((o.key, o.status, o.response)),
    )
    return outcomes


def test_overlapped_transactions_give_each_message_one_outcome(
    smtp_server: SmtpTestServer,
) -> None:
    # One connection, the next MAIL in the same write as the previous message's bytes;
    # failures in the middle of the stream land on the right message and nothing else.
    smtp_server.reject_rcpt["r5@example.org"] = "550 5.1.1 No such user"
    transport = SmtpTransport(smtp_server.url)
    first = _stream(transport, [message(n) for n in range(10)])
    assert [key for key, _, _ in first] == list(range(10))
    assert {key: status for key, status, _ in first if status != "sent"} == {5: "bounced"}
    assert smtp_server.connections == 1

    smtp_server.fail_next_data("451 4.3.0 Try again later")
    second = dict((key, status) for key, status, _ in _stream(transport, [message(10)]))
    assert second == {10: "transient"}
    smtp_server.drop_next_data()
    third = _stream(transport, [message(n) for n in range(11, 20)])
    transport.close()
    statuses = {key: status for key, status, _ in third}
    assert sorted(statuses) == list(range(11, 20))
    assert list(statuses.values()).count("transient") == 1  # the dropped one, and only it
    (dropped,) = [key for key, status in statuses.items() if status == "transient"]
    assert [m.rcpt_tos for m in smtp_server.dropped] == [(f"r{dropped}@example.org",)]
    counts = smtp_server.count_by_recipient()
    assert counts == {f"r{n}@example.org": 1 for n in range(20) if n not in (5, 10, dropped)}
    assert smtp_server.connections == 2  # the drop cost one new connection, no more


def test_a_closing_server_mid_stream_costs_no_message(smtp_server: SmtpTestServer) -> None:
    transport = SmtpTransport(smtp_server.url)
    assert _stream(transport, [message(1)])[0][1] == "sent"
    smtp_server.fail_next_rcpt("421 4.4.2 Idle too long, closing")
    outcomes = _stream(transport, [message(n) for n in range(2, 6)])
    transport.close()
    assert {status for _, status, _ in outcomes} == {"sent"}
    assert sorted(smtp_server.count_by_recipient()) == [f"r{n}@example.org" for n in range(1, 6)]
