"""Images with alt text on every platform, each uploaded once: against fakes that follow the
platforms' documented requests (Mastodon /api/v2/media, Bluesky uploadBlob and embeds,
Telegram sendPhoto, Discord multipart), with the ledger guarding retries."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import ProjectFactory
from delivery_helpers import context, may_day
from PIL import Image
from posting_fakes import BOT_TOKEN, FakeMastodon, FakePds, discord_body, origin, reply
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from test_posting_delivery import project, secrets_and_limits  # noqa: F401  (autouse)
from werkzeug import Request, Response

from scheduler.channels import LinkCard, Media, Post, from_config, split_thread
from scheduler.channels import mastodon as mastodon_module
from scheduler.channels.bluesky import MAX_BLOB_BYTES, BlueskyChannel
from scheduler.config.model import Channel as ChannelConfig
from scheduler.config.project import load_project
from scheduler.content.images import ImageLimits, encode_for, inspect
from scheduler.delivery.fire import fire
from scheduler.preview import build_preview
from scheduler.store.schema import post_uploads

ROOT = Path(__file__).resolve().parent.parent
EN_ALT = "Nine cream-coloured figures stand together on a red background"
ES_ALT = "Nueve figuras de color crema, juntas sobre un fondo rojo"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mastodon_module.MastodonChannel, "poll_seconds", 0.01)


def uploads(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(r.name, r.remote_id) for r in conn.execute(sa.select(post_uploads))]


def test_mastodon_uploads_once_polls_until_processed_and_attaches_it(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    masto = FakeMastodon(httpserver, processing_polls=2).install()
    # The first status is refused for now: the retry must attach the same upload.
    masto.script = [503]
    proj = project(make_project, httpserver, "mastodon", long=False, images=True)
    sleeps: list[float] = []
    ctx = context(proj, store_engine, sleep=sleeps.append)
    report = fire(ctx, may_day(proj))
    ctx.close()
    assert report.result.sent == 1 and len(sleeps) == 1
    ((media_id, upload),) = masto.media.items()
    assert upload["description"].startswith(EN_ALT)
    assert upload["bytes"] == (ROOT / "statements/images/may-day.png").read_bytes()
    assert upload["content_type"] == "image/png" and upload["polls_left"] == 0
    (status,) = masto.statuses
    assert status["media_ids"] == [media_id]
    assert uploads(store_engine) == [("images/may-day.png", media_id)]


def test_mastodon_upload_failures_are_retried_without_posting(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    masto = FakeMastodon(httpserver).install()
    masto.media_script = [502]
    proj = project(make_project, httpserver, "mastodon", long=False, images=True)
    ctx = context(proj, store_engine, sleep=lambda s: None)
    report = fire(ctx, may_day(proj))
    ctx.close()
    assert report.result.sent == 1
    assert len(masto.media) == 1 and masto.statuses[0]["media_ids"] == list(masto.media)


def test_bluesky_record_embeds_images_with_alt_and_aspect_ratio(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    pds = FakePds(httpserver).install()
    pds.script = [502]  # the record fails once; the blob is not uploaded again
    proj = project(make_project, httpserver, "bluesky", images=True)
    ctx = context(proj, store_engine, sleep=lambda s: None)
    report = fire(ctx, may_day(proj))
    ctx.close()
    assert report.result.sent == 1
    (cid,) = pds.blobs
    assert pds.blob_uploads == 1
    first, *rest = pds.thread()
    assert first["embed"] == {
        "$type": "app.bsky.embed.images",
        "images": [
            {
                "$type": "app.bsky.embed.images#image",
                "image": {
                    "$type": "blob",
                    "ref": {"$link": cid},
                    "mimeType": "image/png",
                    "size": len(pds.blobs[cid]["bytes"]),
                },
                "alt": first["embed"]["images"][0]["alt"],
                "aspectRatio": {"width": 1200, "height": 630},
            }
        ],
    }
    assert first["embed"]["images"][0]["alt"].startswith(EN_ALT)
    assert rest and all("embed" not in r for r in rest)  # the thread's replies carry none
    assert pds.valid_records == len(pds.creates)  # each matched app.bsky.feed.post
    ((name, remote),) = uploads(store_engine)
    assert name == "images/may-day.png" and json.loads(remote)["blob"]["ref"]["$link"] == cid


def noise(path: Path, size: tuple[int, int] = (2600, 1600)) -> Path:
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, "PNG")
    return path


def test_a_large_image_is_re_encoded_under_the_bluesky_blob_limit(tmp_path: Path) -> None:
    big = noise(tmp_path / "big.png")
    assert big.stat().st_size > 3 * MAX_BLOB_BYTES
    encoded = encode_for(big, BlueskyChannel.image_limits or ImageLimits())
    assert len(encoded.data) <= MAX_BLOB_BYTES and encoded.mime == "image/jpeg"
    with Image.open(io.BytesIO(encoded.data)) as im:
        assert im.format == "JPEG" and im.size == (encoded.width, encoded.height)
        # Shown at most 2000 wide: nothing visible is lost by scaling to the display size.
        assert max(im.size) <= 2000 and abs(im.width / im.height - 2600 / 1600) < 0.01
    small = ROOT / "statements/images/may-day.png"
    same = encode_for(small, BlueskyChannel.image_limits or ImageLimits())
    assert same.data == small.read_bytes()  # under the limit: sent as it is


def test_bluesky_without_images_posts_a_link_card_with_its_thumbnail(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    pds = FakePds(httpserver).install()
    sky = from_config(
        "sky",
        ChannelConfig(
            type="bluesky",
            handle="alliance.bsky.social",
            app_password="${BLUESKY_PASSWORD}",
            service=origin(httpserver),
        ),
    )
    image = ROOT / "statements/images/may-day.png"
    info = inspect(image)
    thumb = Media(
        name="images/may-day.png",
        path=image,
        alt="x",
        mime=info.mime,
        width=info.width,
        height=info.height,
        size=info.size,
    )
    card = LinkCard(
        url="https://example.org/may-day", title="May Day", description="Why we march", image=thumb
    )
    post = Post(key="k/1", language="en", parts=("May Day https://example.org/may-day",), link=card)
    sky.send(post, env={"BLUESKY_PASSWORD": "app-SECRET-pass"})
    (record,) = pds.thread()
    (cid,) = pds.blobs
    assert record["embed"]["$type"] == "app.bsky.embed.external"
    external = record["embed"]["external"]
    assert (external["uri"], external["title"], external["description"]) == (
        "https://example.org/may-day",
        "May Day",
        "Why we march",
    )
    assert external["thumb"]["ref"] == {"$link": cid}
    assert pds.valid_records == len(pds.creates) == 1


def test_telegram_sends_the_photo_with_its_caption_or_before_a_long_text(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def handle(request: Request) -> Response:
        method = request.path.rsplit("/", 1)[1]
        body = dict(request.form) if request.files else request.get_json()
        if request.files:
            body["photo"] = request.files["photo"].read()
        calls.append((method, body))
        return reply({"ok": True, "result": {"message_id": 70 + len(calls)}})

    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendPhoto").respond_with_handler(handle)
    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendMessage").respond_with_handler(handle)
    proj = project(make_project, httpserver, "telegram", long=False, images=True)
    ctx = context(proj, store_engine)
    assert fire(ctx, may_day(proj)).result.sent == 1
    ((method, body),) = calls
    assert method == "sendPhoto" and body["parse_mode"] == "HTML"
    assert "Primero de Mayo" in body["caption"]
    assert body["photo"] == (ROOT / "statements/images/may-day.png").read_bytes()
    ctx.close()


def test_telegram_long_text_follows_the_photo_as_a_reply(httpserver: HTTPServer) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def handle(request: Request) -> Response:
        method = request.path.rsplit("/", 1)[1]
        calls.append((method, dict(request.form) if request.files else request.get_json()))
        return reply({"ok": True, "result": {"message_id": 70 + len(calls)}})

    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendPhoto").respond_with_handler(handle)
    httpserver.expect_request(f"/bot{BOT_TOKEN}/sendMessage").respond_with_handler(handle)
    tg = from_config(
        "tg",
        ChannelConfig(type="telegram", bot_token="${T}", chat_id=-100, api_base=origin(httpserver)),
    )
    image = ROOT / "statements/images/may-day.png"
    info = inspect(image)
    media = Media(
        name="images/may-day.png",
        path=image,
        alt="x",
        mime=info.mime,
        width=info.width,
        height=info.height,
        size=info.size,
    )
    recorded: list[tuple[str, str]] = []
    post = Post(key="k", language="en", parts=("word " * 300,), media=(media,))
    tg.send(post, env={"T": BOT_TOKEN}, on_uploaded=lambda n, r: recorded.append((n, r)))
    (photo, message) = calls
    assert photo[0] == "sendPhoto" and "caption" not in photo[1]
    assert message[0] == "sendMessage"
    assert message[1]["reply_parameters"]["message_id"] == 71
    assert recorded == [("images/may-day.png", "71")]
    # A retry that knows the photo went out sends only the text.
    calls.clear()
    tg.send(post.replace(uploaded=dict(recorded)), env={"T": BOT_TOKEN})
    assert [c[0] for c in calls] == ["sendMessage"]


def test_discord_sends_the_image_as_multipart_with_its_description(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    bodies: list[dict[str, Any]] = []
    httpserver.expect_request("/api/webhooks/9/tok", method="POST").respond_with_handler(
        lambda r: bodies.append(discord_body(r)) or reply({"id": "1"})
    )
    proj = project(make_project, httpserver, "discord", long=False, images=True)
    ctx = context(proj, store_engine)
    assert fire(ctx, may_day(proj)).result.sent == 1
    ctx.close()
    (body,) = bodies
    (attachment,) = body["attachments"]
    assert attachment["id"] == 0 and attachment["filename"] == "may-day.png"
    assert attachment["description"].startswith(EN_ALT)
    assert body["files"]["files[0]"] == (ROOT / "statements/images/may-day.png").read_bytes()
    assert body["allowed_mentions"] == {"parse": []}


def test_webhook_and_slack_carry_the_public_image_url_and_alt_text() -> None:
    image = ROOT / "statements/images/may-day.png"
    info = inspect(image)
    media = Media(
        name="images/may-day.png",
        path=image,
        alt=ES_ALT,
        mime=info.mime,
        width=info.width,
        height=info.height,
        size=info.size,
        url="https://lists.example.org/media/images/may-day.png",
    )
    post = Post(key="k", language="es", parts=("uno", "dos"), media=(media,))
    hook = from_config(
        "h", ChannelConfig(type="webhook", url="https://h.example/in", secret="${S}")
    )
    first, second = hook.requests(post)
    assert first.json["data"]["images"] == [
        {
            "url": media.url,
            "alt": ES_ALT,
            "width": 1200,
            "height": 630,
            "mime_type": "image/png",
        }
    ]
    assert "images" not in second.json["data"]
    slack = from_config("s", ChannelConfig(type="slack", webhook_url="${S}"))
    (one, _two) = slack.requests(post)
    assert one.json["blocks"][1] == {"type": "image", "image_url": media.url, "alt_text": ES_ALT}
    assert one.json["text"] == "uno"


def test_hashtags_reach_the_post_as_bluesky_tag_facets(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    proj = project(make_project, httpserver, "bluesky", long=False, images=True)
    yaml_path = proj.base_dir / "campaigns.yaml"
    yaml_path.write_text(
        yaml_path.read_text(encoding="utf-8").replace(
            "statement: may-day\n", "statement: may-day\n    hashtags: {en: [MayDay, Solidarity]}\n"
        ),
        encoding="utf-8",
    )
    proj = load_project(yaml_path)
    (item,) = build_preview(proj, "may-day", channel="bluesky", now=may_day(proj).instant)
    assert item.text.rstrip().endswith("#MayDay #Solidarity")
    tags = [
        f["features"][0]["tag"]
        for part in item.requests
        if "record" in part["json"]
        for f in part["json"]["record"].get("facets", [])
        if f["features"][0]["$type"] == "app.bsky.richtext.facet#tag"
    ]
    assert tags == ["MayDay", "Solidarity"]


@pytest.mark.parametrize("limit", range(60, 140, 9))  # each token fits with a counter
def test_thread_splitting_never_cuts_a_hashtag_or_a_url(limit: int) -> None:
    words = " ".join(f"word{i}" for i in range(60))
    url = "https://example.org/a/very/long/path"
    text = f"{words} #InternationalWorkersDay {url} {words} #MayDay ✊🏽"
    parts = split_thread(text, lambda t: len(t) <= limit)
    for whole in ("#InternationalWorkersDay", url, "#MayDay", "✊🏽"):
        assert sum(whole in p for p in parts) == 1, (limit, parts)


def test_an_upload_the_platform_dropped_is_uploaded_again(
    make_project: ProjectFactory, store_engine: Engine, httpserver: HTTPServer
) -> None:
    masto = FakeMastodon(httpserver).install()
    pds = FakePds(httpserver).install()
    # Between attempts the instance and the PDS drop the unattached uploads.
    masto.script = [masto.media.clear]
    pds.script = [502]
    proj = project(make_project, httpserver, "mastodon, bluesky", long=False, images=True)
    ctx = context(proj, store_engine, sleep=lambda s: pds.blobs.clear())
    report = fire(ctx, may_day(proj))
    ctx.close()
    assert report.result.sent == 2
    (media_id,) = masto.media
    assert masto.uploads == 2 and masto.statuses[0]["media_ids"] == [media_id]
    (cid,) = pds.blobs
    assert pds.blob_uploads == 2
    (record,) = pds.thread()
    blob = record["embed"]["images"][0]["image"]
    assert blob["ref"] == {"$link": cid}
    # The ledger holds the uploads that were used, one per delivery.
    remotes = sorted(remote for _, remote in uploads(store_engine))
    assert len(remotes) == 2 and media_id in remotes
    assert any(json.loads(r).get("blob") == blob for r in remotes if r.startswith("{"))


def test_the_email_shows_the_image_at_the_top_of_the_html_part_only(
    make_project: ProjectFactory,
) -> None:
    from scheduler.content.render import SAMPLE_RECIPIENT, Renderer

    proj = load_project(make_project())
    rendered = Renderer(proj).email(may_day(proj), SAMPLE_RECIPIENT)
    body = rendered.html.split("<body", 1)[1]
    first_img = body.index("<img")
    assert first_img < body.index("<h1")
    tag = body[first_img : body.index(">", first_img)]
    assert 'src="http://localhost:8000/media/images/may-day.png"' in tag
    assert f'alt="{EN_ALT}' in tag and 'width="600"' in tag and 'height="315"' in tag
    assert "may-day.png" not in rendered.text and EN_ALT not in rendered.text
