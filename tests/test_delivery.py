"""The delivery ledger and the embedded pipeline, on SQLite and PostgreSQL.

These use the `file:` transport (each message an .eml file) so they pin the ledger's
behaviour; tests against a real SMTP server are in test_delivery_smtp.py.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from typing import Any

import pytest
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, email_project, may_day, outbox
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.audience.csvfile import SubscriberRow
from scheduler.delivery import channel_state, ledger
from scheduler.delivery.batch import send_batch
from scheduler.delivery.fire import fire
from scheduler.delivery.ledger import Claim, Result
from scheduler.store.schema import DeliveryState
from scheduler.store.subscribers import import_rows, suppress, unsubscribe


def test_fan_out_dedups_lists_and_leaves_out_suppressed(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = email_project(make_project)
    add_subscribers(store_engine, 10)  # members
    add_subscribers(store_engine, 5, list_name="press", start=5)  # 5 overlap, none new
    add_subscribers(store_engine, 3, list_name="press", start=100)
    unconfirmed = [SubscriberRow(email="later@example.org", language="en", row=2)]
    import_rows(store_engine, "members", unconfirmed, source="t", status="unconfirmed")
    suppress(store_engine, "person1@example.org", reason="complained")
    occ = may_day(project)
    ledger.claim_occurrence(store_engine, occ)
    added = ledger.fan_out_email(store_engine, occ.id, "email", ["members", "press"])
    assert added == 10 - 1 + 3  # each person once; the suppressed and unconfirmed left out
    assert ledger.fan_out_email(store_engine, occ.id, "email", ["members", "press"]) == 0


def test_a_fan_out_in_id_ranges_adds_whom_one_statement_adds(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    """Chunks of subscriber ids (each telling the membership test its range) add the same
    recipients as one statement: each once, without the suppressed, the unsubscribed and
    the unconfirmed, whichever chunk they fall in."""
    import sqlalchemy as sa

    from scheduler.store.schema import deliveries

    project = email_project(make_project)
    add_subscribers(store_engine, 10)  # members
    add_subscribers(store_engine, 5, list_name="press", start=5)  # on both lists
    add_subscribers(store_engine, 3, list_name="press", start=100)
    unconfirmed = [SubscriberRow(email="later@example.org", language="en", row=2)]
    import_rows(store_engine, "members", unconfirmed, source="t", status="unconfirmed")
    suppress(store_engine, "person1@example.org", reason="complained")
    unsubscribe(store_engine, "person7@example.org", "members")  # still on press
    unsubscribe(store_engine, "person3@example.org", "members")  # on no list now
    one, chunked = may_day(project, 2030), may_day(project, 2031)
    for occ in (one, chunked):
        ledger.claim_occurrence(store_engine, occ)
    ledger.fan_out_email(store_engine, one.id, "email", ["members", "press"])
    top = ledger.last_subscriber_id(store_engine)
    for after in range(0, top, 3):
        upto = after + 3 if after + 3 < top else None
        ledger.fan_out_email_chunk(
            store_engine, chunked.id, "email", ["members", "press"], after=after, upto=upto
        )
    d = deliveries.c
    with store_engine.connect() as conn:

        def recipients(occurrence_id: str) -> list[str]:
            query = sa.select(d.recipient).where(d.occurrence_id == occurrence_id)
            return sorted(conn.execute(query).scalars())

        assert recipients(chunked.id) == recipients(one.id)
        assert len(recipients(one.id)) == 10 - 2 + 3  # person1 suppressed, person3 on no list


def test_an_occurrence_is_claimed_once(make_project: ProjectFactory, store_engine: Engine) -> None:
    project = email_project(make_project)
    occ = may_day(project)
    first, row = ledger.claim_occurrence(store_engine, occ)
    second, again = ledger.claim_occurrence(store_engine, occ)
    assert (first, second) == (Claim.CLAIMED, Claim.RESUMED)
    assert row.state == again.state == "firing"
    assert row.fired_at == again.fired_at


def fanned_out(
    make_project: ProjectFactory, engine: Engine, subscribers: int
) -> tuple[calendar.Occurrence, int, int]:
    """May Day claimed and fanned out to `subscribers` members; its first and last delivery id."""
    project = email_project(make_project)
    add_subscribers(engine, subscribers)
    occ = may_day(project)
    ledger.claim_occurrence(engine, occ)
    ledger.fan_out_email(engine, occ.id, "email", ["members"])
    lo, hi = ledger.id_range(engine, occ.id, "email") or (0, 0)
    return occ, lo, hi


def test_a_batch_sent_during_the_fan_out_asks_one_question_to_finish(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    """While a channel is being fanned out nothing can finish; after each batch sent early
    that is one read, not the write transaction of a finish."""
    import sqlalchemy as sa

    project = email_project(make_project)
    add_subscribers(store_engine, 3)
    occ = may_day(project)
    ledger.claim_occurrence(store_engine, occ)
    ledger.fan_out_email_chunk(store_engine, occ.id, "email", ["members"], after=0, limit=2)
    lo, hi = ledger.id_range(store_engine, occ.id, "email") or (0, 0)
    [first, second] = ledger.claim_batch(
        store_engine, occ.id, "email", lo, hi + 1, lease=dt.timedelta(minutes=5)
    )
    ledger.record(store_engine, [Result(first.id, DeliveryState.SENT, response="250 ok")])
    assert not ledger.finish_if_complete(store_engine, occ.id)  # notes the first send
    statements: list[str] = []

    def seen(_c: object, _cur: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(store_engine, "before_cursor_execute", seen)
    try:
        assert not ledger.finish_if_complete(store_engine, occ.id)
    finally:
        sa.event.remove(store_engine, "before_cursor_execute", seen)
    # (SQLite's reads begin with a plain BEGIN; its writes with BEGIN IMMEDIATE.)
    asked = [q for q in statements if q != "BEGIN"]
    assert len(asked) == 1 and asked[0].lstrip().upper().startswith("SELECT")
    # Once fanned out (one delivery still open) it is still one read per channel; with
    # nothing open, the occurrence finishes.
    ledger.fan_out_email_chunk(store_engine, occ.id, "email", ["members"], after=0)
    channel_state.mark_fanned_out(store_engine, occ.id, "email")
    ledger.mark_fanned_out(store_engine, occ.id)
    assert not ledger.finish_if_complete(store_engine, occ.id)
    rest = ledger.claim_batch(
        store_engine, occ.id, "email", lo, hi + 10, lease=dt.timedelta(minutes=5)
    )
    sent = [Result(d.id, DeliveryState.SENT, response="250 ok") for d in [second, *rest]]
    ledger.record(store_engine, sent)
    assert ledger.finish_if_complete(store_engine, occ.id)


def test_nothing_of_a_cancelled_occurrence_is_claimed(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler.delivery import clock_state as state

    project = email_project(make_project)
    add_subscribers(store_engine, 3)
    occ = may_day(project)
    ledger.claim_occurrence(store_engine, occ)
    ledger.fan_out_email(store_engine, occ.id, "email", ["members"])
    lo, hi = ledger.id_range(store_engine, occ.id, "email") or (0, 0)
    assert state.cancel(store_engine, occ)
    lease = dt.timedelta(minutes=5)
    assert ledger.claim_batch(store_engine, occ.id, "email", lo, hi + 1, lease=lease) == []
    ctx = context(project, store_engine)
    report = send_batch(ctx, occ.id, "email", lo, hi + 1)
    assert (report.cancelled, report.claimed, report.sent) == (True, 0, 0)
    assert ledger.counts(store_engine, occ.id)[occ.id]["email"] == {"pending": 3}
    assert outbox(project) == []
    ctx.close()


def test_a_delivery_has_one_owner_until_its_lease_ends(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    occ, lo, hi = fanned_out(make_project, store_engine, 4)
    lease = dt.timedelta(minutes=5)
    now = dt.datetime.now(dt.UTC)
    mine = ledger.claim_batch(store_engine, occ.id, "email", lo, hi + 1, lease=lease, now=now)
    assert len(mine) == 4
    assert ledger.claim_batch(store_engine, occ.id, "email", lo, hi + 1, lease=lease, now=now) == []
    ledger.record(store_engine, [Result(mine[0].id, DeliveryState.SENT, response="250 ok")])
    # The owner died: after the lease the unsent three can be taken again, the sent one never.
    later = now + lease + dt.timedelta(seconds=1)
    again = ledger.claim_batch(store_engine, occ.id, "email", lo, hi + 1, lease=lease, now=later)
    assert sorted(d.id for d in again) == sorted(d.id for d in mine[1:])
    assert all(d.attempts == 2 for d in again)
    # A late write from the first owner cannot undo a final state.
    ledger.record(store_engine, [Result(mine[0].id, DeliveryState.FAILED, error="late")])
    counts = ledger.counts(store_engine, occ.id)[occ.id]["email"]
    assert counts == {"sent": 1, "sending": 3}


def test_recorded_outcomes_keep_their_text_exactly(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    """Outcomes go to PostgreSQL as one JSON document per flush: quotes, backslashes,
    non-ASCII, emoji and missing values come back as written, each on its own delivery."""
    import sqlalchemy as sa

    from scheduler.store.schema import deliveries

    occ, lo, hi = fanned_out(make_project, store_engine, 4)
    mine = ledger.claim_batch(
        store_engine, occ.id, "email", lo, hi + 1, lease=dt.timedelta(minutes=5)
    )
    texts = ['250 2.0.0 "ok" \\ queued', "250 ¡listo! ñandú 🌍", "550 5.1.1 <x@y> unknown", None]
    results = [
        Result(mine[0].id, DeliveryState.SENT, response=texts[0], message_id="<a@x.org>"),
        Result(mine[1].id, DeliveryState.SENT, response=texts[1], message_id="<b@x.org>"),
        Result(mine[2].id, DeliveryState.FAILED, response=texts[2], error='bounced: it\'s "gone"'),
        Result(mine[3].id, DeliveryState.SKIPPED, error="unsubscribed"),
    ]
    assert ledger.record(store_engine, results) == 4
    d = deliveries.c
    with store_engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                sa.select(d.id, d.state, d.provider_response, d.message_id, d.last_error, d.sent_at)
            )
        }
    for result in results:
        row = rows[result.id]
        assert (row.state, row.provider_response, row.last_error) == (
            result.state.value,
            result.response,
            result.error,
        )
        assert row.message_id == result.message_id
        assert (row.sent_at is not None) == (result.state == DeliveryState.SENT)


def test_an_smtp_reply_with_a_nul_byte_can_be_stored() -> None:
    from scheduler.mail.smtp import _reply

    assert _reply(250, b"2.0.0 ok\x00 queued") == "250 2.0.0 ok\ufffd queued"


def test_fire_sends_each_subscriber_one_message_and_is_idempotent(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = email_project(make_project, batch_size=7)
    emails = add_subscribers(store_engine, 30)
    ctx = context(project, store_engine)
    occ = may_day(project)
    report = fire(ctx, occ)
    assert report.claim is Claim.CLAIMED
    assert (report.result.sent, report.result.failed) == (30, 0)
    assert report.batches == 5 and report.state == "done"
    files = outbox(project)
    messages = [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files
    ]
    assert sorted(str(m["To"]).split("<")[1].rstrip(">") for m in messages) == sorted(emails)
    assert len({m["Message-ID"] for m in messages}) == 30
    spanish = [m for m in messages if m["Content-Language"] == "es"]
    assert len(spanish) == 10 and all("Primero de Mayo" in m["Subject"] for m in spanish)
    again = fire(ctx, occ)
    assert again.claim is Claim.RESUMED
    assert (again.result.sent, again.already_final, again.new_rows) == (0, 30, 0)
    assert len(outbox(project)) == 30
    ctx.close()


def test_late_subscribers_do_not_join_a_fired_occurrence(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = email_project(make_project)
    add_subscribers(store_engine, 3)
    ctx = context(project, store_engine)
    fire(ctx, may_day(project))
    add_subscribers(store_engine, 2, start=50)
    report = fire(ctx, may_day(project))
    assert report.new_rows == 0 and report.result.sent == 0
    assert len(outbox(project)) == 3
    ctx.close()


def test_unsubscribing_before_the_batch_is_sent_means_no_message(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = email_project(make_project, batch_size=5)
    emails = add_subscribers(store_engine, 10)
    ctx = context(project, store_engine)
    occ = may_day(project)
    batches: list[tuple[str, str, int, int]] = []
    # Fan out and plan batches, but hold them back.
    fire(ctx, occ, dispatch=lambda *args: batches.append(args))
    assert len(batches) == 2
    send_batch(ctx, *batches[0])
    unsubscribe(store_engine, emails[9], "members")  # in the second batch
    second = send_batch(ctx, *batches[1])
    assert (second.sent, second.skipped) == (4, 1)
    received = " ".join(f.read_text() for f in outbox(project))
    assert emails[9] not in received and emails[8] in received
    assert ledger.get_occurrence(store_engine, occ.id).state == "done"  # type: ignore[union-attr]
    ctx.close()


def test_a_cancelled_occurrence_stops_before_the_next_batch(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    import sqlalchemy as sa

    from scheduler.store.schema import occurrences

    project = email_project(make_project, batch_size=4)
    add_subscribers(store_engine, 12)
    ctx = context(project, store_engine)
    occ = may_day(project)
    sent_batches = 0

    def dispatch(*args: object) -> None:
        nonlocal sent_batches
        send_batch(ctx, *args)  # type: ignore[arg-type]
        sent_batches += 1
        if sent_batches == 1:
            with store_engine.begin() as conn:
                conn.execute(
                    sa.update(occurrences)
                    .where(occurrences.c.id == occ.id)
                    .values(state="cancelled")
                )

    report = fire(ctx, occ, dispatch=dispatch)
    assert report.result.cancelled
    assert len(outbox(project)) == 4
    counts = ledger.counts(store_engine, occ.id)[occ.id]["email"]
    assert counts == {"sent": 4, "pending": 8}
    assert fire(ctx, occ).claim is Claim.REFUSED
    ctx.close()


def test_fast_messages_match_the_plain_path(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler.delivery.emailing import EmailComposer

    project = email_project(make_project)
    ctx = context(project, store_engine)
    composer = EmailComposer(ctx.renderer, may_day(project), "email")
    for sid, (addr, name, lang) in enumerate(
        [
            ("ana@example.org", 'Ana <b> & "co"', "es"),
            ("bo@example.org", None, "en"),
            ("chloe@example.org", "Chloé Ñúñez", "fr"),
        ],
        start=1,
    ):
        composer.compose(subscriber_id=sid, email_address=addr, name=name, language=lang)
    # Every variant was checked against the plain path on first use and kept the fast path.
    assert composer.fallbacks == 0
    assert all(v.verified and v.factory is not None for v in composer._variants.values())


def test_a_template_beyond_placeholders_falls_back_to_the_plain_path(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler.delivery.emailing import EmailComposer

    project = email_project(make_project)
    html = project.templates_dir / "email" / "statement.html"
    html.write_text(
        html.read_text().replace("{{ recipient.name }}", "{{ recipient.name | upper }}")
    )
    ctx = context(project, store_engine)
    composer = EmailComposer(ctx.renderer, may_day(project), "email")
    data = composer.compose(
        subscriber_id=1, email_address="a@example.org", name="Ana", language="en"
    )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert "ANA" in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert composer.fallbacks == 1


def test_the_clock_leaves_a_missed_occurrence_but_an_organizer_can_send_it(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler.delivery import clock_state as state

    project = email_project(make_project)
    add_subscribers(store_engine, 2)
    ctx = context(project, store_engine)
    occ = may_day(project)
    assert state.record_missed(store_engine, occ, "due while nothing ran")
    assert fire(ctx, occ).claim is Claim.REFUSED  # the clock's view
    assert outbox(project) == []
    report = fire(ctx, occ, revive_missed=True, note="sent by hand after being missed")
    assert (report.claim, report.result.sent, report.state) == (Claim.CLAIMED, 2, "done")
    assert state.cancel(store_engine, may_day(project, 2031))
    assert fire(ctx, may_day(project, 2031), revive_missed=True).claim is Claim.REFUSED
    ctx.close()


@pytest.mark.postgres
def test_a_large_import_leaves_statistics_for_the_send_that_follows(pg_engine: Engine) -> None:
    """Planned with the tables' statistics from before the import, the first batch of a send
    read the whole list (0.2 s at 50,000) to find its 250 members."""

    def estimated(table: str) -> float:
        with pg_engine.connect() as conn:
            return float(
                conn.exec_driver_sql(
                    "SELECT reltuples FROM pg_class WHERE relname = %s"
                    " AND relnamespace = current_schema()::regnamespace",
                    (table,),
                ).scalar()
            )

    import_rows(pg_engine, "members", _members(10), source="test")
    assert estimated("subscribers") < 0  # a small import leaves them (never analyzed)
    rows = _members(1500, start=10)
    import_rows(pg_engine, "members", rows, source="test")
    assert estimated("subscribers") == 1510
    assert estimated("memberships") == 1510


@pytest.mark.postgres
def test_recording_outcomes_finds_its_rows_by_id_with_batches_in_flight(
    make_project: ProjectFactory, pg_engine: Engine
) -> None:
    """The statistics of a fresh fan-out say no row is `sending`. Planned from them, the
    outcome write walked every row in flight and, for each, every outcome of the flush
    (40 ms a flush with two batches in flight, measured at 50,000)."""
    import datetime as dt
    import json

    occ, lo, _ = fanned_out(make_project, pg_engine, 2000)
    ledger.refresh_statistics(pg_engine)  # every row pending, as at the fan-out
    lease = dt.timedelta(minutes=5)
    held = ledger.claim_batch(pg_engine, occ.id, "email", lo, lo + 250, lease=lease)
    held += ledger.claim_batch(pg_engine, occ.id, "email", lo + 250, lo + 500, lease=lease)
    assert len(held) == 500
    flush = [
        [d.id, "sent", "250 2.0.0 Ok: queued", f"<m{d.id}@example.org>", None] for d in held[:125]
    ]
    now = dt.datetime.now(dt.UTC)
    with pg_engine.connect() as conn:
        plan = "\n".join(
            row[0]
            for row in conn.exec_driver_sql(
                "EXPLAIN " + ledger._RECORD_POSTGRESQL, (now, now, json.dumps(flush))
            )
        )
    # By the primary key, or (a small table) one pass over it into a hash: either costs the
    # flush's rows or the table's, never their product.
    assert "ix_deliveries_occurrence_state" not in plan, plan
    assert "Index Scan using pk_deliveries on deliveries" in plan or "Hash Join" in plan, plan
    # And it writes what it says: only the rows still sending, each once.
    outcomes = [Result(d.id, DeliveryState.SENT, response="250 ok") for d in held[:125]]
    assert ledger.record(pg_engine, outcomes) == 125
    counts = ledger.counts(pg_engine, occ.id)[occ.id]["email"]
    assert (counts["sent"], counts["sending"], counts["pending"]) == (125, 375, 1500)


@pytest.mark.postgres
def test_the_first_chunk_of_a_fan_out_is_planned_with_the_first_batch_counted(
    make_project: ProjectFactory, pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk asks "already there?" of each subscriber against the first batch.
    Planned from statistics that showed no deliveries, that was an anti-join keeping the
    batch's rows in memory and comparing every subscriber of the chunk with each of them
    (1.2 million comparisons, 0.3 s of a 5,000-member chunk, measured)."""
    from scheduler.delivery import fire as fire_module

    monkeypatch.setattr(fire_module, "FAN_OUT_CHUNK_BATCHES", 8)
    project = email_project(make_project, batch_size=250)
    add_subscribers(pg_engine, 4000)
    ledger.refresh_statistics(pg_engine)  # deliveries empty, as before any send
    ctx = context(project, pg_engine)
    occ = may_day(project)
    plans: list[str] = []
    chunk = ledger.fan_out_email_chunk

    def planned_chunk(
        engine: Engine, occurrence_id: str, channel: str, lists: list[str], **kw: Any
    ) -> ledger.FannedChunk:
        if kw.get("limit") is None and kw.get("after") == 0:
            with engine.connect() as conn:
                insert = ledger._fan_out_insert(conn, occurrence_id, channel, lists, **kw)
                sql = insert.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
                plans.append("\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}")))
        return chunk(engine, occurrence_id, channel, lists, **kw)

    monkeypatch.setattr(ledger, "fan_out_email_chunk", planned_chunk)
    enqueued: list[tuple[int, int]] = []
    try:
        report = fire(ctx, occ, dispatch=lambda o, c, lo, hi: enqueued.append((lo, hi)))
    finally:
        ctx.close()
    assert report.new_rows == 4000
    [plan] = plans
    # The first batch's 250 rows are known: no loop over them for each subscriber.
    assert "Materialize" not in plan, plan
    assert "Join Filter: ((deliveries_1.recipient)" not in plan, plan
    # A hash of the batch built once, or one probe of the unique index per subscriber.
    assert (
        "Hash Anti Join" in plan
        or "Index Only Scan using uq_deliveries_occurrence_id_channel_recipient" in plan
    ), plan
    assert sorted(enqueued) == ledger.batch_ranges(ledger.id_range(pg_engine, occ.id, "email"), 250)


def _members(n: int, start: int = 0) -> list[SubscriberRow]:
    return [
        SubscriberRow(email=f"member.{i}@example.org", name=None, language="en", row=i + 2)
        for i in range(start, start + n)
    ]


@pytest.mark.postgres
def test_refreshed_statistics_count_the_new_rows_with_a_small_sample(
    make_project: ProjectFactory, pg_engine: Engine
) -> None:
    import sqlalchemy as sa

    fanned_out(make_project, pg_engine, 4000)
    ledger.refresh_statistics(pg_engine)
    with pg_engine.connect() as conn:
        counted = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"
            " AND relnamespace = current_schema()::regnamespace"
        ).scalar()
        # The smaller sample was asked for in the refresh's own transaction only.
        target = conn.exec_driver_sql("SHOW default_statistics_target").scalar()
        assert conn.scalar(sa.text("SELECT count(*) FROM deliveries")) == 4000
    assert counted == 4000
    assert target == "100"
