"""Posting through the real pipeline (fire → batch → ledger) against local fake platforms:
each part exactly once, threads that continue, honest records, reasons that name no secret."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from delivery_helpers import context, may_day
from posting_fakes import (
    APP_PASSWORD,
    BOT_TOKEN,
    TOKEN,
    FakeMastodon,
    FakePds,
    discord_body,
    origin,
    reply,
)
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from werkzeug import Request, Response

from scheduler.channels import mastodon as mastodon_module
from scheduler.channels.bluesky import record_key
from scheduler.config.project import Project, load_project
from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.delivery.posting import delivery_key, thread_of
from scheduler.store.schema import deliveries
from scheduler.validate import validate_project

PROJECT = """\
organization:
  name: Test Org
  website: https://example.org
  postal_address: 1 Main Street, Town
  timezone: Europe/Madrid
  languages: [en, es]
lists:
  members: {source: members.csv}
channels:
  mastodon: {type: mastodon, instance: "ORIGIN", token: "${MASTODON_TOKEN}"}
  bluesky:
    type: bluesky
    handle: alliance.bsky.social
    app_password: "${BLUESKY_PASSWORD}"
    service: "ORIGIN"
  discord: {type: discord, webhook_url: "${DISCORD_WEBHOOK_URL}"}
  telegram:
    type: telegram
    bot_token: "${TELEGRAM_BOT_TOKEN}"
    chat_id: -100123
    api_base: "ORIGIN"
    language: es
campaigns:
  may-day:
    name: {en: May Day, es: Primero de Mayo}
    date: "05-01"
    time: "09:00"
    statement: may-day
    steps:
      statement:
        channels: [CHANNELS]
        template: statement
        OVERFLOW
"""

LONG = (
    "{{ statement.title }}\n\n"
    + " ".join(f"Demand number {i}: papers, wages and housing for all." for i in range(1, 9))
    + "\n\nRead it all: {{ statement.url }} #MayDay"
)


@pytest.fixture(autouse=True)
def secrets_and_limits(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> Iterator[None]:
    monkeypatch.setenv("MASTODON_TOKEN", TOKEN)
    monkeypatch.setenv("BLUESKY_PASSWORD", APP_PASSWORD)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", httpserver.url_for("/api/webhooks/9/tok"))
    mastodon_module._LIMITS.clear()
    yield
    mastodon_module._LIMITS.clear()


def project(
    make_project: ProjectFactory,
    server: HTTPServer,
    channels: str,
    *,
    long: bool = True,
    overflow: str = "",
    images: bool = False,
) -> Project:
    """The statement's image is left out unless `images`: these tests are about text."""
    text = (
        PROJECT.replace("ORIGIN", origin(server))
        .replace("CHANNELS", channels)
        .replace("OVERFLOW", f"overflow: {overflow}" if overflow else "")
    )
    path = make_project(text)
    if not images:
        for statement in (path.parent / "statements").glob("*.md"):
            source = statement.read_text(encoding="utf-8")
            statement.write_text(re.sub(r"\nimage:\n(  .*\n)+", "\n", source), encoding="utf-8")
    if long:
        for name in ("statement.txt", "statement.bluesky.txt"):
            (path.parent / "templates" / "post" / name).write_text(LONG)
    return load_project(path)


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.channel: r for r in conn.execute(sa.select(deliveries))}


def test_firing_the_same_occurrence_twice_posts_once(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    masto = FakeMastodon(httpserver, max_characters=200).install()
    pds = FakePds(httpserver).install()
    discord: list[dict[str, Any]] = []
    httpserver.expect_request("/api/webhooks/9/tok", method="POST").respond_with_handler(
        lambda r: discord.append(discord_body(r)) or reply({"id": str(len(discord))})
    )
    proj = project(make_project, httpserver, "mastodon, bluesky, discord")
    ctx = context(proj, store_engine, http_timeout=(1.0, 1.0))
    occ = may_day(proj)
    report = fire(ctx, occ)
    assert (report.result.sent, report.result.failed) == (3, 0)
    assert report.state == "done"
    assert len(masto.statuses) > 1 and len(pds.records) > 1 and len(discord) == 1
    requests_before = len(httpserver.log)
    again = fire(ctx, occ)
    assert again.result.sent == 0 and again.already_final == 3
    assert len(httpserver.log) == requests_before
    by_channel = rows(store_engine)
    assert by_channel["mastodon"].message_id == masto.statuses[0]["id"]
    assert by_channel["bluesky"].message_id == pds.uri(record_key(f"{occ.id}/bluesky", 1))
    parts = thread_of(store_engine, by_channel["mastodon"].id)
    assert [p.ref.id if p.ref else None for p in parts] == [s["id"] for s in masto.statuses]
    ctx.close()


def test_mastodon_timeout_after_acceptance_does_not_post_twice(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    masto = FakeMastodon(httpserver, max_characters=200, script=["slow"]).install()
    proj = project(make_project, httpserver, "mastodon")
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append, http_timeout=(1.0, 0.3))
    occ = may_day(proj)
    report = fire(ctx, occ)
    assert (report.result.sent, report.result.retried) == (1, 1)
    key = delivery_key(occ.id, "mastodon")
    assert masto.posts_per_key[f"{key}/1"] == 2  # asked twice ...
    assert len(masto.statuses) == len(masto.by_key)  # ... posted once
    texts = [s["status"] for s in masto.statuses]
    assert len(texts) == len(set(texts)) and texts[0].startswith("May Day")
    assert len(sleeps) == 1
    ctx.close()


def test_bluesky_timeout_after_acceptance_looks_the_record_up(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    pds = FakePds(httpserver, script=["slow"]).install()
    proj = project(make_project, httpserver, "bluesky")
    ctx = context(proj, store_engine, sleep=lambda s: None, http_timeout=(1.0, 0.3))
    occ = may_day(proj)
    report = fire(ctx, occ)
    assert report.result.sent == 1
    first = record_key(delivery_key(occ.id, "bluesky"), 1)
    assert pds.creates.count(first) == 1 and pds.lookups == [first]
    thread = pds.thread()
    assert len(thread) > 1
    assert all(r["reply"]["root"]["uri"] == pds.uri(first) for r in thread[1:])
    tags = [f for f in thread[-1]["facets"] if f["features"][0].get("tag") == "MayDay"]
    assert len(tags) == 1
    ctx.close()


def test_a_thread_continues_after_the_last_posted_part(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    masto = FakeMastodon(httpserver, max_characters=200, script=[None, 500, 502]).install()
    proj = project(make_project, httpserver, "mastodon")
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append)
    occ = may_day(proj)
    report = fire(ctx, occ)
    assert (report.result.sent, report.result.retried) == (1, 2)
    key = delivery_key(occ.id, "mastodon")
    assert masto.posts_per_key[f"{key}/1"] == 1  # never asked again, not only deduplicated
    assert masto.posts_per_key[f"{key}/2"] == 3
    ids = [s["id"] for s in masto.statuses]
    assert [s.get("in_reply_to_id") for s in masto.statuses] == [None, *ids[:-1]]
    assert len(sleeps) == 2
    (row,) = rows(store_engine).values()
    # The 500 counts against the post; the 502 (the platform's gateway: it is down) does not.
    assert row.state == "sent" and row.attempts == 2
    ctx.close()


def test_a_stopped_sender_leaves_the_thread_for_the_next_one(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    stop = threading.Event()
    masto = FakeMastodon(httpserver, max_characters=200, script=[None, stop.set]).install()
    proj = project(make_project, httpserver, "mastodon")
    first = context(proj, store_engine, stop=stop)
    occ = may_day(proj)
    fire(first, occ)
    (row,) = rows(store_engine).values()
    assert row.state == "pending" and "after part 1" in row.last_error
    later = context(proj, store_engine)
    report = fire(later, occ)
    assert report.result.sent == 1
    key = delivery_key(occ.id, "mastodon")
    assert masto.posts_per_key[f"{key}/1"] == 1
    assert masto.statuses[1]["in_reply_to_id"] == masto.statuses[0]["id"]
    assert len(masto.statuses) == len(thread_of(store_engine, row.id))
    first.close()
    later.close()


def test_discord_timeout_after_acceptance_is_recorded_honestly(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    received: list[str] = []

    def handle(request: Request) -> Response:
        received.append(discord_body(request)["content"])
        if len(received) == 1:
            time.sleep(0.6)  # Discord took it; the answer comes too late
        return reply({"id": str(len(received))})

    httpserver.expect_request("/api/webhooks/9/tok").respond_with_handler(handle)
    proj = project(make_project, httpserver, "discord", long=False)
    ctx = context(proj, store_engine, sleep=lambda s: None, http_timeout=(1.0, 0.3))
    report = fire(ctx, may_day(proj))
    assert report.result.sent == 1
    assert len(received) == 2  # no idempotency on Discord webhooks: it shows twice
    (row,) = rows(store_engine).values()
    assert "may show twice" in row.provider_response
    ctx.close()


def test_a_refused_token_fails_with_a_reason_in_status_and_no_secret(
    make_project: ProjectFactory,
    store_engine: Engine,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeMastodon(httpserver).install()
    monkeypatch.setenv("MASTODON_TOKEN", "revoked-SECRET-token")
    proj = project(make_project, httpserver, "mastodon", long=False)
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append)
    occ = may_day(proj)
    report = fire(ctx, occ)
    assert (report.result.sent, report.result.failed, sleeps) == (0, 1, [])
    assert report.state == "done"
    ((channel, reason, n),) = ledger.failures(store_engine, occ.id)
    assert (channel, n) == ("mastodon", 1)
    assert "HTTP 401" in reason and "access token" in reason
    assert "revoked-SECRET-token" not in reason
    assert list(report.result.reasons) == ["mastodon refused the post (HTTP 401)"]
    ctx.close()


def test_telegram_rate_limit_waits_as_asked(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    calls: list[dict[str, Any]] = []

    def handle(request: Request) -> Response:
        calls.append(request.get_json())
        if len(calls) == 1:
            return reply(
                {"ok": False, "error_code": 429, "parameters": {"retry_after": 3}}, status=429
            )
        return reply({"ok": True, "result": {"message_id": 40 + len(calls)}})

    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendMessage").respond_with_handler(handle)
    proj = project(make_project, httpserver, "telegram", long=False)
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append)
    report = fire(ctx, may_day(proj))
    assert report.result.sent == 1 and sleeps == [3]
    assert calls[0] == calls[1] and calls[0]["parse_mode"] == "HTML"
    assert "Primero de Mayo" in calls[0]["text"]  # the channel's language
    ctx.close()


def test_persistent_5xx_waits_in_the_ledger_then_fails_when_its_window_is_over(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/v1/statuses").respond_with_json({"error": "down"}, status=503)
    httpserver.expect_request("/api/v2/instance").respond_with_json({}, status=503)
    proj = project(make_project, httpserver, "mastodon", long=False)
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append)
    occ = may_day(proj)
    report = fire(ctx, occ)
    # A few short waits in the batch, then the post waits in the ledger for its next try.
    assert (report.result.failed, report.result.deferred, len(sleeps)) == (0, 1, 4)
    row = rows(store_engine)["mastodon"]
    assert row.state == "pending" and row.next_attempt_at is not None
    assert row.first_failed_at is not None and "HTTP 503" in row.last_error
    ctx.close()
    # The same, with a retry window that is over by the second try: failed, saying why.
    with store_engine.begin() as conn:
        conn.execute(sa.delete(deliveries))
        conn.execute(sa.text("DELETE FROM occurrence_channels"))
        conn.execute(sa.text("DELETE FROM occurrences"))
    path = proj.base_dir / "campaigns.yaml"
    path.write_text(
        path.read_text().replace("type: mastodon,", 'type: mastodon, retry_window: "0m",')
    )
    proj = load_project(path)
    ctx = context(proj, store_engine, sleep=sleeps.append)
    report = fire(ctx, occ)
    assert (report.result.failed, report.result.deferred) == (1, 0)
    ((_, reason, _),) = ledger.failures(store_engine, occ.id)
    assert reason.startswith("temporary failures for the whole retry window (0m)")
    assert "HTTP 503" in reason
    ctx.close()


def test_overflow_error_is_a_validation_error_and_never_posted(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    proj = project(make_project, httpserver, "bluesky", overflow="error")
    report = validate_project(proj.base_dir / "campaigns.yaml")
    (error,) = report.errors
    assert re.search(
        r"channel 'bluesky' is \d{3} characters, over bluesky's limit of 300", error.message
    )
    assert error.line > 0 and "overflow: thread" in (error.hint or "")
    pds = FakePds(httpserver).install()
    ctx = context(proj, store_engine)
    result = fire(ctx, may_day(proj))
    assert result.result.failed == 1 and pds.creates == []
    ctx.close()


def test_short_post_with_overflow_error_validates(
    make_project: ProjectFactory, httpserver: HTTPServer, tmp_path: Path
) -> None:
    proj = project(make_project, httpserver, "bluesky", long=False, overflow="error")
    assert validate_project(proj.base_dir / "campaigns.yaml").ok
