"""Channels: length rules, thread splitting, request previews, settings and signatures."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from scheduler.channels import (
    CHANNEL_CLASSES,
    AnyChannel,
    BlueskyChannel,
    Channel,
    ChannelSettings,
    DiscordChannel,
    MastodonChannel,
    Post,
    SlackChannel,
    SmtpChannel,
    TelegramChannel,
    WebhookChannel,
    from_config,
    get_channel_class,
    split_thread,
)
from scheduler.channels.base import SecretRef, find_urls
from scheduler.channels.bluesky import TID, record_key
from scheduler.channels.webhook import sign
from scheduler.config.model import Channel as ChannelConfig

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦, 7 code points
E_ACUTE = "e\u0301"  # e + combining acute accent, 2 code points
FLAG = "\U0001f1ea\U0001f1f8"  # 🇪🇸, 2 regional indicators
SECRET_VALUE = "s3cr3t-VALUE-never-shown"
KEY = "may-day/2027/statement/fediverse"


def a_post(parts: list[str], *, key: str = KEY, language: str = "en", **fields: Any) -> Post:
    return Post(key=key, language=language, parts=tuple(parts), **fields)


def make(channel_type: str, **settings: Any) -> AnyChannel:
    return from_config(f"test-{channel_type}", ChannelConfig(type=channel_type, **settings))


def mastodon() -> MastodonChannel:
    return MastodonChannel.from_config(
        "fedi",
        ChannelConfig(
            type="mastodon", instance="https://social.example/", token="${MASTODON_TOKEN}"
        ),
    )


def bluesky() -> BlueskyChannel:
    return BlueskyChannel.from_config(
        "sky",
        ChannelConfig(
            type="bluesky", handle="alliance.bsky.social", app_password="${BLUESKY_PASSWORD}"
        ),
    )


def discord() -> DiscordChannel:
    return DiscordChannel.from_config(
        "disc",
        ChannelConfig(type="discord", webhook_url="${DISCORD_WEBHOOK_URL}", username="Alliance"),
    )


def slack() -> SlackChannel:
    return SlackChannel.from_config(
        "sl", ChannelConfig(type="slack", webhook_url="${SLACK_WEBHOOK_URL}")
    )


def telegram() -> TelegramChannel:
    return TelegramChannel.from_config(
        "tg",
        ChannelConfig(type="telegram", bot_token="${TELEGRAM_BOT_TOKEN}", chat_id=-1001234567890),
    )


def webhook() -> WebhookChannel:
    return WebhookChannel.from_config(
        "hook",
        ChannelConfig(type="webhook", url="https://hooks.example/in", secret="${WEBHOOK_SECRET}"),
    )


def long_statement(paragraphs: int = 6) -> str:
    """Multilingual paragraphs of sentences with URLs, emoji and mentions, like a real statement."""
    sentences = [
        "Migrant workers keep this country running, every single day.",
        "Read our full statement at "
        f"https://alliance.example/statements/may-day-2027?lang=en#demands {FAMILY}.",
        "¡Trabajadoras del hogar, únanse! La lucha continúa en cada ciudad.",
        f"Caf{E_ACUTE} meetings with @maria@social.example and @ana start at nine {FLAG}!",
        "Solidarność ponad granicami: https://example.org/" + "p" * 60 + " — dołącz do nas.",
        "We demand papers, fair wages and safe housing for all.",
    ]
    paras = []
    for p in range(paragraphs):
        paras.append(" ".join(sentences[(p + i) % len(sentences)] for i in range(p % 4 + 2)))
    return "\n\n".join(paras)


COUNTER = re.compile(r" \((\d+)/(\d+)\)$")


def strip_counters(parts: list[str]) -> list[str]:
    if len(parts) == 1:
        assert not COUNTER.search(parts[0])
        return parts
    stripped = []
    for i, part in enumerate(parts, 1):
        m = COUNTER.search(part)
        assert m is not None, part
        assert (int(m[1]), int(m[2])) == (i, len(parts))
        stripped.append(part[: m.start()])
    return stripped


def assert_good_thread(channel: AnyChannel, text: str) -> list[str]:
    parts = channel.split(text)
    assert channel.max_length is not None
    for part in parts:
        assert channel.count(part) <= channel.max_length, part
        assert channel.fits(part)
    bodies = strip_counters(parts)
    assert " ".join(bodies).split() == text.split()
    for start, end in find_urls(text):
        assert any(text[start:end] in body for body in bodies), text[start:end]
    return parts


# --- counting ------------------------------------------------------------------------------


def test_mastodon_counts_any_url_as_23() -> None:
    m = mastodon()
    long_url = "https://alliance.example/" + "a" * 300
    assert m.count(long_url) == 23
    assert m.count("https://a.io") == 23
    assert m.count(f"Read {long_url}.") == len("Read ") + 23 + len(".")
    assert m.count(f"Read {long_url} and https://b.example/x") == 5 + 23 + 5 + 23


def test_mastodon_counts_remote_mentions_by_username_and_graphemes() -> None:
    m = mastodon()
    assert m.count("hi @maria@social.example!") == len("hi @maria!")
    assert m.count("hi @ana") == 7
    assert m.count(FAMILY + E_ACUTE) == 2


def test_mastodon_limit_uses_its_rule_not_len() -> None:
    m = mastodon()
    text = " ".join(["https://alliance.example/" + "x" * 80] * 20)  # 2119 chars, counts 479
    assert len(text) > 2000
    assert m.count(text) == 20 * 23 + 19
    assert m.split(text) == [text]


def test_bluesky_counts_graphemes_not_code_points() -> None:
    b = bluesky()
    text = f"{FAMILY} {E_ACUTE} {FLAG}"
    assert len(text) == 7 + 1 + 2 + 1 + 2
    assert b.count(text) == 5
    assert b.count("Día") == 3


def test_bluesky_also_enforces_its_byte_limit() -> None:
    b = bluesky()
    families = " ".join([FAMILY] * 150)  # 299 graphemes but 3899 bytes
    assert b.count(families) == 299
    assert not b.fits(families)
    parts = b.split(families)
    assert len(parts) == 2
    assert all(len(p.encode()) <= 3000 for p in parts)
    assert " ".join(strip_counters(parts)).split() == families.split()


@pytest.mark.parametrize("channel", [discord, telegram])
def test_discord_and_telegram_count_code_points(channel: Any) -> None:
    c = channel()
    assert c.count(FAMILY) == 7
    assert c.count(f"Café {E_ACUTE}") == 7


def test_slack_counts_text_as_escaped() -> None:
    assert slack().count("a<b & c") == len("a&lt;b &amp; c")


# --- splitting -----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [mastodon, bluesky, discord, telegram])
def test_threads_fit_keep_every_word_and_number_parts(channel: Any) -> None:
    c = channel()
    assert c.max_length is not None
    text = long_statement(40 if c.max_length > 1000 else 8)
    parts = assert_good_thread(c, text)
    assert len(parts) > 2


def test_short_text_is_one_part_without_counter() -> None:
    assert mastodon().split("  May Day: we march at noon.  ") == ["May Day: we march at noon."]
    assert mastodon().split(" \n ") == []


def test_split_prefers_paragraphs_then_sentences() -> None:
    m = mastodon()
    p1 = "First paragraph. " * 20  # 340
    p2 = "Second paragraph. " * 20  # 360
    parts = m.split(p1.strip() + "\n\n" + p2.strip())
    assert parts == [p1.strip() + " (1/2)", p2.strip() + " (2/2)"]

    sentences = " ".join(f"Sentence number {i} is here." for i in range(40))
    parts = assert_good_thread(m, sentences)
    assert all(body.endswith(".") for body in strip_counters(parts))


def test_split_never_breaks_urls_even_with_a_small_limit() -> None:
    urls = [f"https://ex.org/{i:02d}/" + "u" * 20 for i in range(30)]
    text = " ".join(f"see {u} now" for u in urls)
    parts = split_thread(text, lambda s: len(s) <= 60)
    assert all(len(p) <= 60 for p in parts)
    bodies = strip_counters(parts)
    assert " ".join(bodies).split() == text.split()
    for u in urls:
        assert any(u in b for b in bodies)


def test_counters_grow_to_two_digits() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    parts = split_thread(text, lambda s: len(s) <= 40)
    assert len(parts) >= 10
    assert parts[0].endswith(f" (1/{len(parts)})")
    assert all(len(p) <= 40 for p in parts)
    assert " ".join(strip_counters(parts)).split() == text.split()


def test_a_word_longer_than_the_limit_is_cut() -> None:
    m = mastodon()
    word = "Solidarność" * 100  # 1100 characters, no spaces
    parts = m.split(f"Start. {word} end.")
    assert all(m.count(p) <= 500 for p in parts)
    assert "".join(strip_counters(parts)).replace(" ", "") == f"Start.{word}end."


def test_hard_cut_keeps_grapheme_clusters_whole() -> None:
    parts = split_thread(FAMILY * 30, lambda s: len(s) <= 40)
    bodies = strip_counters(parts)
    assert "".join(bodies) == FAMILY * 30
    assert all(len(b) % len(FAMILY) == 0 for b in bodies)


def test_split_is_deterministic() -> None:
    text = long_statement(10)
    assert bluesky().split(text) == bluesky().split(text)


def test_limit_too_small_for_a_counter_is_an_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        split_thread("a b c d e f", lambda s: len(s) <= 3)


# --- requests ------------------------------------------------------------------------------


def dump(posts: list[Any]) -> str:
    return json.dumps([p.as_dict() for p in posts], ensure_ascii=False)


ALL_POSTING = [mastodon, bluesky, discord, slack, telegram, webhook]
SECRET_ENV = [
    "MASTODON_TOKEN",
    "BLUESKY_PASSWORD",
    "DISCORD_WEBHOOK_URL",
    "SLACK_WEBHOOK_URL",
    "TELEGRAM_BOT_TOKEN",
    "WEBHOOK_SECRET",
]


@pytest.mark.parametrize("channel", ALL_POSTING)
def test_previews_never_contain_resolved_secrets(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SECRET_ENV:
        monkeypatch.setenv(name, SECRET_VALUE)
    c = channel()
    preview = dump(c.preview(long_statement(), key=KEY, language="en"))
    assert SECRET_VALUE not in preview
    (secret_field,) = c.secret_fields
    assert getattr(c.settings, secret_field) in preview  # the ${NAME} reference is shown


def test_reference_defaults_are_not_shown() -> None:
    m = MastodonChannel.from_config(
        "m",
        ChannelConfig(
            type="mastodon", instance="https://social.example", token="${TOK:-" + SECRET_VALUE + "}"
        ),
    )
    (post,) = m.requests(a_post(["hello"], key=KEY, language="en"))
    assert post.headers["Authorization"] == "Bearer ${TOK}"
    assert SECRET_VALUE not in dump([post])


def test_mastodon_requests() -> None:
    m = mastodon()
    posts = m.requests(a_post(["one", "two", "three"], key=KEY, language="es"))
    assert [p.url for p in posts] == ["https://social.example/api/v1/statuses"] * 3
    assert posts[0].method == "POST"
    assert posts[0].headers["Authorization"] == "Bearer ${MASTODON_TOKEN}"
    assert [p.headers["Idempotency-Key"] for p in posts] == [f"{KEY}/1", f"{KEY}/2", f"{KEY}/3"]
    assert posts[0].json == {"status": "one", "visibility": "public", "language": "es"}
    assert posts[1].json["in_reply_to_id"] == "{id of part 1}"
    assert posts[2].json["in_reply_to_id"] == "{id of part 2}"
    again = m.requests(a_post(["one", "two", "three"], key=KEY, language="es"))
    assert again == posts
    other = m.requests(a_post(["one"], key="may-day/2028/statement/fediverse", language="es"))
    assert other[0].headers["Idempotency-Key"] != posts[0].headers["Idempotency-Key"]


def test_bluesky_link_facets_use_utf8_byte_offsets() -> None:
    b = bluesky()
    url = "https://alliance.example/día-de-la-mujer?x=1"
    text = f"Día Internacional {FAMILY} de la Mujer — léelo en {url}. ¡Únete!"
    (post,) = b.requests(a_post([text], key=KEY, language="es"))
    record = post.json["record"]
    (facet,) = record["facets"]
    start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
    assert start != text.index(url)  # bytes, not code points
    assert text.encode()[start:end].decode() == url
    assert facet["features"] == [{"$type": "app.bsky.richtext.facet#link", "uri": url}]


def test_bluesky_requests_and_record_keys() -> None:
    b = bluesky()
    at = dt.datetime(2027, 5, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    posts = b.requests(a_post(["one", "two", "three"], key=KEY, language="pt", at=at))
    assert posts[0].url == "https://bsky.social/xrpc/com.atproto.repo.createRecord"
    rkeys = [p.json["rkey"] for p in posts]
    assert all(TID.match(k) for k in rkeys)
    assert len(set(rkeys)) == 3
    assert rkeys == [record_key(KEY, i) for i in (1, 2, 3)]
    assert record_key("may-day/2028/statement/fediverse", 1) != rkeys[0]
    first = posts[0].json
    assert first["repo"] == "alliance.bsky.social"
    assert first["collection"] == "app.bsky.feed.post"
    assert first["record"]["$type"] == "app.bsky.feed.post"
    assert first["record"]["langs"] == ["pt"]
    assert first["record"]["createdAt"] == "2027-05-01T07:00:00.000Z"
    assert "reply" not in first["record"] and "facets" not in first["record"]
    reply = posts[2].json["record"]["reply"]
    assert reply["root"]["uri"].endswith("/app.bsky.feed.post/" + rkeys[0])
    assert reply["parent"]["uri"].endswith("/app.bsky.feed.post/" + rkeys[1])
    assert reply["parent"]["cid"] == "{cid of part 2}"
    assert (
        b.requests(a_post(["x"], key=KEY, language="pt"))[0]
        .json["record"]["createdAt"]
        .startswith("{")
    )


def test_discord_requests_cannot_ping_anyone() -> None:
    (post,) = discord().requests(a_post(["@everyone May Day!"], key=KEY, language="en"))
    assert post.url == "${DISCORD_WEBHOOK_URL}?wait=true"
    assert post.json == {
        "content": "@everyone May Day!",
        "allowed_mentions": {"parse": []},
        "username": "Alliance",
    }


def test_slack_requests_escape_control_characters() -> None:
    (post,) = slack().requests(
        a_post(["Wages < rent & <!channel> > silence"], key=KEY, language="en")
    )
    assert post.url == "${SLACK_WEBHOOK_URL}"
    assert post.json == {"text": "Wages &lt; rent &amp; &lt;!channel&gt; &gt; silence"}


def test_telegram_requests() -> None:
    posts = telegram().requests(a_post(["one & <two>", "two"], key=KEY, language="en"))
    assert posts[0].url == "https://api.telegram.org/bot${TELEGRAM_BOT_TOKEN}/sendMessage"
    assert posts[0].json == {
        "chat_id": -1001234567890,
        "text": "one &amp; &lt;two&gt;",
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": False},
    }
    assert "reply_parameters" not in posts[0].json
    assert posts[1].json["reply_parameters"]["message_id"] == "{message_id of part 1}"


def test_webhook_request_is_one_standard_webhook() -> None:
    w = webhook()
    text = long_statement(30)
    assert w.split(text) == [text.strip()]
    at = dt.datetime(2027, 12, 18, 8, 30, tzinfo=dt.UTC)
    (post,) = w.preview(text, key=KEY, language="fr", at=at)
    assert post.url == "https://hooks.example/in"
    assert post.headers["webhook-id"] == KEY
    assert post.headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert post.headers["webhook-signature"].startswith("v1,")
    assert "${WEBHOOK_SECRET}" in post.headers["webhook-signature"]
    assert post.json == {
        "type": "statement.published",
        "timestamp": "2027-12-18T08:30:00.000Z",
        "data": {"text": text.strip(), "language": "fr"},
    }


def test_smtp_has_no_post_requests() -> None:
    s = make("smtp", url="smtp://mail.example.org:587", sender="alliance")
    assert s.kind == "email" and s.max_length is None
    with pytest.raises(TypeError, match="email"):
        s.requests(a_post(["x"], key=KEY, language="en"))


def test_email_channels_do_not_post() -> None:
    s = make("smtp", url="file:outbox", sender="alliance")
    with pytest.raises(NotImplementedError, match="email"):
        s.send(a_post(["x"]))


def test_loopback_http_is_allowed_for_tests_only() -> None:
    local = make("mastodon", instance="http://127.0.0.1:8080/", token="${T}")
    assert local.settings.instance == "http://127.0.0.1:8080"
    assert make("telegram", bot_token="${T}", chat_id=1, api_base="http://localhost:9")
    with pytest.raises(ValidationError):
        make("telegram", bot_token="${T}", chat_id=1, api_base="http://api.telegram.org")


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel_type", "settings", "field"),
    [
        ("mastodon", {"instance": "https://social.example", "token": "abc123"}, "token"),
        ("bluesky", {"handle": "a.bsky.social", "app_password": "xxxx-xxxx"}, "app_password"),
        ("discord", {"webhook_url": "https://discord.com/api/webhooks/1/tok"}, "webhook_url"),
        ("slack", {"webhook_url": "https://hooks.slack.com/services/T/B/X"}, "webhook_url"),
        ("telegram", {"bot_token": "123:ABC", "chat_id": 1}, "bot_token"),
        ("webhook", {"url": "https://h.example", "secret": "whsec_QUJD"}, "secret"),
    ],
)
def test_literal_secret_is_rejected(
    channel_type: str, settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        make(channel_type, **settings)
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert "${" in error["msg"]


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        make("mastodon", instance="https://social.example", token="${T}", visiblity="public")
    (error,) = info.value.errors()
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("visiblity",)


@pytest.mark.parametrize(
    "settings",
    [
        {"instance": "http://social.example", "token": "${T}"},
        {"instance": "social.example", "token": "${T}"},
        {"instance": "https://social.example", "token": "${T}", "visibility": "direct"},
        {"token": "${T}"},
    ],
)
def test_bad_mastodon_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make("mastodon", **settings)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://mail.example.org:587",
        "smtps://alliance:${SMTP_PASSWORD}@mail.example.org:465",
        "smtp://user%40example.org:${SMTP_PASSWORD}@mail.example.org",
        "smtp://alliance@mail.example.org",
        "file:outbox",
        "file:///var/spool/alliance",
    ],
)
def test_good_smtp_urls(url: str) -> None:
    s = make("smtp", url=url, sender="alliance", rate_per_hour=500, list_id="News <n.a.example>")
    assert isinstance(s, SmtpChannel)
    assert s.settings.connections == 4


def test_smtp_password_must_be_a_reference() -> None:
    with pytest.raises(ValidationError) as info:
        make("smtp", url="smtp://alliance:hunter2@mail.example.org:587", sender="alliance")
    (error,) = info.value.errors()
    assert error["loc"] == ("url",)
    assert "${SMTP_PASSWORD}" in error["msg"]
    assert "hunter2" not in error["msg"]


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "ftp://mail.example.org"},
        {"url": "smtp://mail.example.org:99999"},
        {"url": "file:"},
        {"url": "smtp://mail.example.org", "connections": 0},
        {"url": "smtp://mail.example.org", "list_id": "x\r\nBcc: victim@example.org"},
        {"url": "smtp://mail.example.org", "rate_per_second": -1},
    ],
)
def test_bad_smtp_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make("smtp", sender="alliance", **settings)


def test_telegram_chat_id_forms() -> None:
    assert make("telegram", bot_token="${T}", chat_id="@alliance_news").settings.chat_id == (
        "@alliance_news"
    )
    with pytest.raises(ValidationError):
        make("telegram", bot_token="${T}", chat_id="alliance news")


def test_from_config_checks_the_type() -> None:
    with pytest.raises(ValueError, match="not 'mastodon'"):
        MastodonChannel.from_config("x", ChannelConfig(type="slack", webhook_url="${S}"))


def test_channel_language_comes_from_config() -> None:
    c = make("slack", webhook_url="${S}", language="fr")
    assert c.language == "fr"
    assert c.name == "test-slack"


# --- registry ------------------------------------------------------------------------------


def test_registry_covers_every_configurable_type() -> None:
    # campaigns.yaml knows exactly the registry's types
    for name in CHANNEL_CLASSES:
        assert ChannelConfig(type=name).type == name
    with pytest.raises(ValidationError, match="unknown channel type 'mastadon'; did you mean"):
        ChannelConfig(type="mastadon")
    for name, cls in CHANNEL_CLASSES.items():
        assert cls.type == name
        assert get_channel_class(name) is cls
        assert cls.Settings.model_config.get("extra") == "forbid"
        assert cls.Settings.model_config.get("frozen") is True
    with pytest.raises(ValueError, match="unknown channel type"):
        get_channel_class("myspace")


def test_secret_fields_must_match_the_settings() -> None:
    class FaxSettings(ChannelSettings):
        number: str
        token: SecretRef

    with pytest.raises(TypeError, match="secret_fields"):

        class FaxChannel(Channel[FaxSettings]):  # pragma: no cover - rejected at definition
            type = "fax"
            max_length = 100
            Settings = FaxSettings
            secret_fields = ()


# --- Standard Webhooks ---------------------------------------------------------------------


def test_sign_matches_an_independent_hmac() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = json.dumps({"type": "statement.published", "data": {"text": "¡Sí!"}}).encode()
    expected = base64.b64encode(
        hmac.new(key, b"msg_42.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert sign(secret, "msg_42", 1700000000, body) == "v1," + expected
    assert sign(secret.removeprefix("whsec_"), "msg_42", 1700000000, body) == "v1," + expected
    assert sign(secret, "msg_43", 1700000000, body) != "v1," + expected


def test_sign_matches_the_published_vector() -> None:
    # From the Standard Webhooks reference libraries' tests.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_sign_rejects_a_secret_that_is_not_base64() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        sign("whsec_not base64!", "msg", 1, b"{}")


def test_smtp_url_may_choose_the_starttls_policy() -> None:
    from scheduler.channels.smtp import SmtpSettings

    for policy in ("auto", "require", "off"):
        url = f"smtp://user:${{SMTP_PASSWORD}}@mail.example.org:587?starttls={policy}"
        assert SmtpSettings.model_validate({"url": url, "sender": "org"}).url == url
    with pytest.raises(ValidationError):
        SmtpSettings.model_validate(
            {"url": "smtp://mail.example.org?starttls=maybe", "sender": "org"}
        )
