"""Each platform's `send` against a local server that checks the exact requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from posting_fakes import (
    APP_PASSWORD,
    BOT_TOKEN,
    TOKEN,
    FakeMastodon,
    FakePds,
    origin,
    reply,
)
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from scheduler.channels import (
    AnyChannel,
    BlueskyChannel,
    Post,
    PostRef,
    from_config,
)
from scheduler.channels import mastodon as mastodon_module
from scheduler.channels.bluesky import record_key
from scheduler.channels.http import PermanentPostError, TransientPostError
from scheduler.config.model import Channel as ChannelConfig

KEY = "may-day/2027/statement/ch"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(autouse=True)
def fresh_instance_limits() -> Iterator[None]:
    mastodon_module._LIMITS.clear()
    yield
    mastodon_module._LIMITS.clear()


def post(parts: list[str], *, key: str = KEY, language: str = "en", **fields: Any) -> Post:
    return Post(key=key, language=language, parts=tuple(parts), **fields)


def channel(type_: str, **settings: Any) -> AnyChannel:
    c = from_config(f"test-{type_}", ChannelConfig(type=type_, **settings))
    # Short, so a test that hangs fails fast, but not so short that a loaded machine (the
    # fake Bluesky validates each record against the lexicon first) reads as a timeout.
    c.timeout = (1.0, 5.0)
    return c


def mastodon(server: HTTPServer) -> AnyChannel:
    return channel("mastodon", instance=origin(server), token="${MASTODON_TOKEN}")


def bluesky(server: HTTPServer) -> AnyChannel:
    return channel(
        "bluesky",
        handle="alliance.bsky.social",
        app_password="${BLUESKY_PASSWORD}",
        service=origin(server),
    )


ENV = {
    "MASTODON_TOKEN": TOKEN,
    "BLUESKY_PASSWORD": APP_PASSWORD,
    "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
    "WEBHOOK_SECRET": WEBHOOK_SECRET,
}


# --- Mastodon ----------------------------------------------------------------------------------


def test_mastodon_reads_the_instance_limit_once_and_threads_with_replies(
    httpserver: HTTPServer,
) -> None:
    fake = FakeMastodon(httpserver, max_characters=120, url_weight=30).install()
    m = mastodon(httpserver)
    m.prepare(ENV)
    m.prepare(ENV)
    assert fake.instance_reads == 1
    assert m.limit == 120 and m.count("see https://example.org/a-very-long-path") == 4 + 30
    text = " ".join(f"Sentence number {i} about wages." for i in range(12))
    parts = m.split(text)
    assert len(parts) > 2 and all(m.count(p) <= 120 for p in parts)
    seen: list[tuple[int, PostRef]] = []
    refs = m.send(
        post(parts, key=KEY, language="es"), env=ENV, on_posted=lambda i, r: seen.append((i, r))
    )
    assert [r.id for r in refs] == [s["id"] for s in fake.statuses]
    assert seen == list(enumerate(refs, 1))
    first, second = fake.statuses[0], fake.statuses[1]
    assert {k: v for k, v in first.items() if k != "id"} == {
        "status": parts[0],
        "visibility": "public",
        "language": "es",
    }
    assert second["in_reply_to_id"] == first["id"]
    requests = [r for r, _ in httpserver.log if r.path == "/api/v1/statuses"]
    assert [r.headers["Idempotency-Key"] for r in requests] == [
        f"{KEY}/{i}" for i in range(1, len(parts) + 1)
    ]
    assert requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert requests[0].headers["Content-Type"] == "application/json"


def test_mastodon_continues_a_thread_after_the_posted_parts(httpserver: HTTPServer) -> None:
    fake = FakeMastodon(httpserver).install()
    m = mastodon(httpserver)
    refs = m.send(post(["a", "b", "c"], key=KEY, language="en"), env=ENV, posted=[PostRef(id="77")])
    assert len(refs) == 3 and refs[0].id == "77"
    assert [s["status"] for s in fake.statuses] == ["b", "c"]
    assert fake.statuses[0]["in_reply_to_id"] == "77"


def test_mastodon_refused_token_is_permanent_and_says_so_without_the_token(
    httpserver: HTTPServer,
) -> None:
    FakeMastodon(httpserver).install()
    m = mastodon(httpserver)
    with pytest.raises(PermanentPostError) as info:
        m.send(post(["hello"], key=KEY, language="en"), env={"MASTODON_TOKEN": "expired-SECRET-x"})
    message = str(info.value)
    assert "HTTP 401" in message and "access token" in message
    assert "expired-SECRET-x" not in message and TOKEN not in message


def test_mastodon_429_carries_retry_after(httpserver: HTTPServer) -> None:
    FakeMastodon(httpserver, script=[("429", "7")]).install()
    with pytest.raises(TransientPostError) as info:
        mastodon(httpserver).send(post(["hello"], key=KEY, language="en"), env=ENV)
    assert info.value.retry_after == 7 and info.value.status == 429


def test_mastodon_validation_error_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/statuses").respond_with_json(
        {"error": "Validation failed: Text character limit of 500 exceeded"}, status=422
    )
    with pytest.raises(PermanentPostError, match="character limit"):
        mastodon(httpserver).send(post(["x"], key=KEY, language="en"), env=ENV)


def test_an_unreachable_instance_keeps_the_default_limits() -> None:
    m = channel("mastodon", instance="http://127.0.0.1:9", token="${MASTODON_TOKEN}")
    m.prepare(ENV)
    assert m.limit == 500
    with pytest.raises(TransientPostError) as info:
        m.send(post(["x"], key=KEY, language="en"), env=ENV)
    assert TOKEN not in str(info.value)


# --- Bluesky -----------------------------------------------------------------------------------


def test_bluesky_thread_with_emoji_before_links_and_tags(httpserver: HTTPServer) -> None:
    pds = FakePds(httpserver).install()
    b = bluesky(httpserver)
    url = "https://alliance.example/día?x=1"
    first = f"Día de la Mujer {FAMILY} ¡léelo! {url} #8M #Huelga…"
    parts = [first, "Solidaridad 🇪🇸 #DíaDeLaMujer https://example.org/b", "(3/3) fin"]
    refs = b.send(post(parts, key=KEY, language="es"), env=ENV)
    assert pds.logins == 1
    rkeys = [record_key(KEY, i) for i in (1, 2, 3)]
    assert list(pds.records) == rkeys
    assert refs == [PostRef(id=pds.uri(k), cid=pds.cid(k)) for k in rkeys]
    body = pds.records[rkeys[0]]
    assert body["repo"] == "alliance.bsky.social"
    assert body["collection"] == "app.bsky.feed.post"
    record = body["record"]
    assert record["text"] == first and record["langs"] == ["es"]
    encoded = first.encode()
    spans = [
        (encoded[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0])
        for f in record["facets"]
    ]
    assert spans == [
        (url, {"$type": "app.bsky.richtext.facet#link", "uri": url}),
        ("#8M", {"$type": "app.bsky.richtext.facet#tag", "tag": "8M"}),
        ("#Huelga", {"$type": "app.bsky.richtext.facet#tag", "tag": "Huelga"}),
    ]
    assert "reply" not in record
    third = pds.records[rkeys[2]]["record"]
    assert third["reply"] == {
        "root": {"uri": pds.uri(rkeys[0]), "cid": pds.cid(rkeys[0])},
        "parent": {"uri": pds.uri(rkeys[1]), "cid": pds.cid(rkeys[1])},
    }
    second = pds.records[rkeys[1]]["record"]
    tags = [f["features"][0] for f in second["facets"]]
    assert {"$type": "app.bsky.richtext.facet#tag", "tag": "DíaDeLaMujer"} in tags
    created = [pds.records[k]["record"]["createdAt"] for k in rkeys]
    assert created == sorted(created)
    auth = [r.headers.get("Authorization") for r, _ in httpserver.log if "createRecord" in r.path]
    assert auth == ["Bearer access-1"] * 3


def test_bluesky_reuses_its_session_and_refreshes_an_expired_token(httpserver: HTTPServer) -> None:
    pds = FakePds(httpserver).install()
    b = bluesky(httpserver)
    b.send(post(["one"], key=KEY, language="en"), env=ENV)
    pds.expired.add("access-1")
    b.send(post(["two"], key=KEY + "x", language="en"), env=ENV)
    assert (pds.logins, pds.refreshes) == (1, 1)
    assert len(pds.records) == 2


def test_bluesky_signs_in_again_when_the_refresh_token_is_spent(httpserver: HTTPServer) -> None:
    pds = FakePds(httpserver).install()
    b = bluesky(httpserver)
    b.send(post(["one"], key=KEY, language="en"), env=ENV)
    pds.expired.add("access-1")
    pds.access = "access-9"  # the refresh token the channel holds is no longer known
    b.send(post(["two"], key=KEY + "x", language="en"), env=ENV)
    assert pds.logins == 2 and len(pds.records) == 2


def test_bluesky_wrong_app_password_is_permanent(httpserver: HTTPServer) -> None:
    FakePds(httpserver).install()
    with pytest.raises(PermanentPostError) as info:
        bluesky(httpserver).send(
            post(["x"], key=KEY, language="en"), env={"BLUESKY_PASSWORD": "nope-pw"}
        )
    assert "HTTP 401" in str(info.value) and "app password" in str(info.value)
    assert "nope-pw" not in str(info.value)


def test_bluesky_looks_the_record_up_before_creating_it_again(httpserver: HTTPServer) -> None:
    pds = FakePds(httpserver).install()
    b = bluesky(httpserver)
    rkey = record_key(KEY, 1)
    pds.records[rkey] = {"rkey": rkey, "record": {"text": "one"}}  # taken, answer lost
    (ref,) = b.send(post(["one"], key=KEY, language="en"), env=ENV, maybe_posted=True)
    assert ref == PostRef(id=pds.uri(rkey), cid=pds.cid(rkey))
    assert pds.creates == [] and pds.lookups == [rkey]


def test_bluesky_duplicate_record_key_answers_500_as_transient(httpserver: HTTPServer) -> None:
    pds = FakePds(httpserver).install()
    rkey = record_key(KEY, 1)
    pds.records[rkey] = {"rkey": rkey, "record": {"text": "one"}}
    with pytest.raises(TransientPostError) as info:
        bluesky(httpserver).send(post(["one"], key=KEY, language="en"), env=ENV)
    assert info.value.maybe_accepted and info.value.status == 500


def test_bluesky_rate_limit_reset_is_honoured(httpserver: HTTPServer) -> None:
    import time

    FakePds(httpserver).install()
    httpserver.clear()
    reset = str(int(time.time()) + 30)
    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_response(
        reply({"error": "RateLimitExceeded"}, 429, {"RateLimit-Reset": reset})
    )
    with pytest.raises(TransientPostError) as info:
        bluesky(httpserver).send(post(["x"], key=KEY, language="en"), env=ENV)
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31


# --- Discord, Slack, Telegram ------------------------------------------------------------------


def test_discord_waits_for_the_message_and_reports_rate_limits(
    httpserver: HTTPServer,
) -> None:
    calls: list[Request] = []

    def handle(request: Request) -> Response:
        calls.append(request)
        if len(calls) == 1:
            return reply({"message": "You are being rate limited.", "retry_after": 0.25}, 429)
        return reply({"id": "111222333", "content": request.get_json()["content"]})

    httpserver.expect_request("/api/webhooks/1/tok", method="POST").respond_with_handler(handle)
    env = {"DISCORD_WEBHOOK_URL": httpserver.url_for("/api/webhooks/1/tok")}
    d = channel("discord", webhook_url="${DISCORD_WEBHOOK_URL}", username="Alliance")
    with pytest.raises(TransientPostError) as info:
        d.send(post(["@everyone May Day"], key=KEY, language="en"), env=env)
    assert info.value.retry_after == 0.25
    assert "tok" not in str(info.value).replace("token", "")
    (ref,) = d.send(post(["@everyone May Day"], key=KEY, language="en"), env=env)
    assert ref.id == "111222333"
    assert calls[1].args.to_dict() == {"wait": "true"}
    assert calls[1].get_json() == {
        "content": "@everyone May Day",
        "allowed_mentions": {"parse": []},
        "username": "Alliance",
    }


def test_discord_deleted_webhook_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/webhooks/1/tok").respond_with_json(
        {"message": "Unknown Webhook", "code": 10015}, status=404
    )
    env = {"DISCORD_WEBHOOK_URL": httpserver.url_for("/api/webhooks/1/tok")}
    with pytest.raises(PermanentPostError, match="Unknown Webhook") as info:
        channel("discord", webhook_url="${DISCORD_WEBHOOK_URL}").send(
            post(["x"], key=KEY, language="en"), env=env
        )
    assert "/api/webhooks/1/tok" not in str(info.value)


def test_slack_posts_escaped_text_and_reads_plain_text_errors(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/services/T/B/X", method="POST", json={"text": "Wages &lt; rent &amp; more"}
    ).respond_with_data("ok", content_type="text/plain")
    httpserver.expect_oneshot_request("/services/T/B/X").respond_with_data(
        "channel_is_archived", status=410, content_type="text/plain"
    )
    env = {"SLACK_WEBHOOK_URL": httpserver.url_for("/services/T/B/X")}
    s = channel("slack", webhook_url="${SLACK_WEBHOOK_URL}")
    assert s.send(post(["Wages < rent & more"], key=KEY, language="en"), env=env) == [
        PostRef(id=None)
    ]
    with pytest.raises(PermanentPostError, match="channel_is_archived"):
        s.send(post(["again"], key=KEY, language="en"), env=env)


def test_telegram_sends_escaped_html_as_a_reply_thread(httpserver: HTTPServer) -> None:
    sent: list[dict[str, Any]] = []

    def handle(request: Request) -> Response:
        body = request.get_json()
        sent.append(body)
        return reply({"ok": True, "result": {"message_id": 500 + len(sent), "text": body["text"]}})

    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendMessage", method="POST").respond_with_handler(
        handle
    )
    t = channel(
        "telegram",
        bot_token="${TELEGRAM_BOT_TOKEN}",
        chat_id="@alliance_news",
        api_base=origin(httpserver),
    )
    refs = t.send(post(["Pay <b>now</b> & fair", "part two"], key=KEY, language="en"), env=ENV)
    assert [r.id for r in refs] == ["501", "502"]
    assert sent[0] == {
        "chat_id": "@alliance_news",
        "text": "Pay &lt;b&gt;now&lt;/b&gt; &amp; fair",
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": False},
    }
    assert sent[1]["reply_parameters"] == {"message_id": 501, "allow_sending_without_reply": True}
    assert sent[1]["link_preview_options"] == {"is_disabled": True}


def test_telegram_429_parameters_retry_after_and_no_token_in_errors(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendMessage").respond_with_json(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        },
        status=429,
    )
    t = channel(
        "telegram", bot_token="${TELEGRAM_BOT_TOKEN}", chat_id=-100123, api_base=origin(httpserver)
    )
    with pytest.raises(TransientPostError) as info:
        t.send(post(["x"], key=KEY, language="en"), env=ENV)
    assert info.value.retry_after == 3
    assert BOT_TOKEN not in str(info.value)
    unreachable = channel(
        "telegram", bot_token="${TELEGRAM_BOT_TOKEN}", chat_id=1, api_base="http://127.0.0.1:9"
    )
    with pytest.raises(TransientPostError) as down:
        unreachable.send(post(["x"], key=KEY, language="en"), env=ENV)
    assert BOT_TOKEN not in str(down.value) and "SECRET" not in str(down.value)


def test_an_unset_secret_is_named_not_guessed(httpserver: HTTPServer) -> None:
    from scheduler.errors import SecretError

    with pytest.raises(SecretError, match="TELEGRAM_BOT_TOKEN"):
        channel("telegram", bot_token="${TELEGRAM_BOT_TOKEN}", chat_id=1).send(
            post(["x"], key=KEY, language="en"), env={}
        )


# --- Standard Webhooks -------------------------------------------------------------------------


def test_webhook_is_signed_per_standard_webhooks_with_a_stable_id(httpserver: HTTPServer) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    def handle(request: Request) -> Response:
        received.append((dict(request.headers), request.get_data()))
        return Response("", status=503 if len(received) == 1 else 204)

    httpserver.expect_request("/hooks/in", method="POST").respond_with_handler(handle)
    w = channel("webhook", url=httpserver.url_for("/hooks/in"), secret="${WEBHOOK_SECRET}")
    meta = {"occurrence": {"id": "may-day/2027/statement"}, "channel": "partners"}
    with pytest.raises(TransientPostError):
        w.send(post(["¡Sí! ✊"], key=KEY, language="es", metadata=meta), env=ENV)
    (ref,) = w.send(post(["¡Sí! ✊"], key=KEY, language="es", metadata=meta), env=ENV)
    assert ref.id == KEY
    verifier = Webhook(WEBHOOK_SECRET)
    for headers, body in received:
        payload = verifier.verify(body, headers)
        assert payload["type"] == "statement.published"
        assert payload["data"] == {
            "text": "¡Sí! ✊",
            "language": "es",
            "occurrence": {"id": "may-day/2027/statement"},
            "channel": "partners",
        }
    assert [h["Webhook-Id"] for h, _ in received] == [KEY, KEY]
    tampered = json.loads(received[1][1])
    tampered["data"]["text"] = "forged"
    with pytest.raises(Exception, match="signature"):
        verifier.verify(json.dumps(tampered), received[1][0])


def test_webhook_parts_of_a_thread_have_their_own_ids(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hooks/in").respond_with_data("", status=200)
    w = channel("webhook", url=httpserver.url_for("/hooks/in"), secret="${WEBHOOK_SECRET}")
    refs = w.send(post(["a", "b"], key=KEY, language="en"), env=ENV)
    assert [r.id for r in refs] == [f"{KEY}/1", f"{KEY}/2"]
    bodies = [json.loads(r.get_data()) for r, _ in httpserver.log]
    assert [b["data"]["part"] for b in bodies] == [
        {"index": 1, "total": 2},
        {"index": 2, "total": 2},
    ]


def test_bluesky_channel_type_is_registered() -> None:
    assert isinstance(
        channel("bluesky", handle="a.bsky.social", app_password="${P}"), BlueskyChannel
    )
