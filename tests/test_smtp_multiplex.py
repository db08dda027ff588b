"""Several SMTP connections driven from the caller's thread (scheduler/mail/multiplex.py),
against a real aiosmtpd server: each message gets exactly one outcome, whatever the server
does to one connection while the others carry on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from smtp_server import SmtpTestServer

from scheduler.mail.smtp import SmtpTransport
from scheduler.mail.transport import Outgoing, TransportPool

SENDER = "news@example.org"


def message(key: int) -> Outgoing:
    to = f"r{key}@example.org"
    data = (
        f"From: <{SENDER}>\r\nTo: {to}\r\nSubject: Statement {key}\r\n"
        f"Message-ID: <{key}@test.example.org>\r\n\r\nHello.\r\n"
    ).encode()
    return Outgoing(key=key, envelope_from=SENDER, recipient=to, data=data, wire=True)


def test_no_thread_is_started_and_every_message_is_sent_once(smtp_server: SmtpTestServer) -> None:
    before = threading.active_count()
    seen_threads: set[int] = set()

    def messages() -> Iterator[Outgoing]:
        for n in range(300):
            seen_threads.add(threading.active_count())
            yield message(n)

    with TransportPool(lambda: SmtpTransport(smtp_server.url), connections=4) as pool:
        outcomes = list(pool.send_all(messages()))
    assert seen_threads == {before}  # the connections are driven from this thread
    assert sorted(o.key for o in outcomes) == list(range(300))
    assert {o.status for o in outcomes} == {"sent"}
    counts = smtp_server.count_by_recipient()
    assert len(counts) == 300 and set(counts.values()) == {1}
    assert smtp_server.connections == 4
    assert smtp_server.wait_all_closed()


def test_drops_and_refusals_on_some_connections_cost_only_their_messages(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.reject_rcpt["r7@example.org"] = "550 5.1.1 No such user"
    smtp_server.fail_next_data("451 4.3.0 Try again later", times=2)
    smtp_server.drop_next_data(times=3)
    with TransportPool(lambda: SmtpTransport(smtp_server.url), connections=4) as pool:
        outcomes = list(pool.send_all(message(n) for n in range(200)))
    by_key = {o.key: o.status for o in outcomes}
    assert sorted(by_key) == list(range(200)) and len(outcomes) == 200
    assert by_key[7] == "bounced"
    transient = sorted(k for k, s in by_key.items() if s == "transient")
    assert len(transient) == 5  # two 451s and the three dropped, nothing else
    dropped = {m.rcpt_tos[0] for m in smtp_server.dropped}
    assert len(dropped) == 3 and dropped <= {f"r{k}@example.org" for k in transient}
    sent = {k for k, s in by_key.items() if s == "sent"}
    assert smtp_server.count_by_recipient() == {f"r{k}@example.org": 1 for k in sent}
    assert smtp_server.connections == 4 + 3  # each drop cost one new connection


def test_a_silent_server_times_out_each_connection_with_a_transient_outcome(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.data_delay = 3.0  # longer than the transport's timeout
    with TransportPool(lambda: SmtpTransport(smtp_server.url, timeout=0.5), connections=2) as pool:
        outcomes = list(pool.send_all(message(n) for n in range(2)))
    assert sorted(o.key for o in outcomes) == [0, 1]
    for outcome in outcomes:
        assert outcome.status == "transient"
        assert "timed out" in outcome.response


def test_an_error_in_the_callers_messages_leaves_the_loop_and_no_half_message(
    smtp_server: SmtpTestServer,
) -> None:
    def messages() -> Iterator[Outgoing]:
        yield from (message(n) for n in range(10))
        raise RuntimeError("the ledger is gone")

    pool = TransportPool(lambda: SmtpTransport(smtp_server.url), connections=3)
    got = []
    with pytest.raises(RuntimeError, match="the ledger is gone"):
        for outcome in pool.send_all(messages()):
            got.append(outcome)
    pool.close()
    assert smtp_server.wait_all_closed()
    # Every message the server took is one of the ten, once; none arrived half written.
    counts = smtp_server.count_by_recipient()
    assert set(counts.values()) <= {1}
    assert set(counts) <= {f"r{n}@example.org" for n in range(10)}
    assert {o.status for o in got} <= {"sent"}
    assert smtp_server.dropped == []


def test_implicit_tls_connections_are_multiplexed_too() -> None:
    with SmtpTestServer(tls="implicit") as server:
        context = server.client_ssl_context()
        with TransportPool(
            lambda: SmtpTransport(server.url, ssl_context=context), connections=3
        ) as pool:
            outcomes = list(pool.send_all(message(n) for n in range(120)))
        assert {o.status for o in outcomes} == {"sent"} and len(outcomes) == 120
        assert set(server.count_by_recipient().values()) == {1}
        assert len(server.messages) == 120


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_server_without_pipelining_is_driven_one_command_at_a_time(pipelining: bool) -> None:
    with SmtpTestServer(pipelining=pipelining) as server:
        with TransportPool(lambda: SmtpTransport(server.url), connections=3) as pool:
            outcomes = list(pool.send_all(message(n) for n in range(60)))
        assert {o.status for o in outcomes} == {"sent"} and len(outcomes) == 60
        assert len(server.messages) == 60
