"""`preview --out` writes each image as each platform receives it and one page per
occurrence showing every post; `--json` includes the upload requests."""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

from conftest import MINIMAL, ProjectFactory
from PIL import Image
from sqlalchemy.engine import Engine

from scheduler.config.project import load_project
from scheduler.preview import build_preview

WITH_BLUESKY = MINIMAL.replace(
    "channels:\n",
    "channels:\n  bluesky: {type: bluesky, handle: a.bsky.social, "
    'app_password: "${BLUESKY_APP_PASSWORD}", language: es}\n',
).replace("channels: [email, mastodon]", "channels: [email, mastodon, bluesky]")


def test_preview_writes_platform_images_and_one_page_per_occurrence(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    path = make_project(WITH_BLUESKY)
    big = path.parent / "statements" / "images" / "may-day.png"
    Image.frombytes("RGB", (1800, 1200), os.urandom(1800 * 1200 * 3)).save(big, "PNG")
    assert big.stat().st_size > 1_000_000
    out = tmp_path / "preview"
    now = dt.datetime(2030, 4, 1, tzinfo=dt.UTC)
    items = build_preview(load_project(path), "may-day", out=out, now=now)
    folder = out / "may-day" / "statement"
    by_channel = {i.channel: i for i in items if not i.is_email}
    (sky_image,) = by_channel["bluesky"].images
    assert sky_image["mime_type"] == "image/jpeg" and sky_image["bytes"] <= 1_000_000
    assert (folder / sky_image["file"]).stat().st_size == sky_image["bytes"]
    (masto_image,) = by_channel["mastodon"].images
    assert masto_image["mime_type"] == "image/png"  # under Mastodon's limit: as it is
    assert (folder / masto_image["file"]).read_bytes() == big.read_bytes()
    assert sky_image["alt"].startswith("Nueve figuras")  # the channel's language
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert page.count("<section>") == 4  # two emails, two posts
    assert f'src="{sky_image["file"]}"' in page and "alt: Nueve figuras" in page
    assert str(folder / "index.html") in by_channel["mastodon"].files + items[0].files
    requests = by_channel["bluesky"].as_json()["post"]["requests"]
    assert requests[0]["url"].endswith("/xrpc/com.atproto.repo.uploadBlob")
    embed = requests[1]["json"]["record"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert embed["images"][0]["image"]["size"] == sky_image["bytes"]
    masto = by_channel["mastodon"].as_json()["post"]["requests"]
    assert masto[0]["url"].endswith("/api/v2/media")
    assert masto[1]["json"]["media_ids"] == ["{id of images/may-day.png}"]


WITH_INSTAGRAM = (
    MINIMAL.replace(
        "  languages: [en, es]\n",
        "  languages: [en, es]\n  public_url: https://lists.example.org\n",
    )
    .replace(
        "channels:\n",
        'channels:\n  insta: {type: instagram, user_id: "1784", access_token: "${IG_TOKEN}"}\n',
    )
    .replace("channels: [email, mastodon]", "channels: [email, mastodon, insta]")
)


def test_platforms_that_fetch_by_url_get_the_image_re_encoded_as_previewed(
    make_project: ProjectFactory, store_engine: Engine, tmp_path: Path
) -> None:
    from PIL import Image as PILImage
    from web_helpers import web_app

    from scheduler.validate import validate_project

    path = make_project(WITH_INSTAGRAM)
    big = path.parent / "statements" / "images" / "may-day.png"
    PILImage.new("RGB", (2400, 1260), "crimson").save(big, "PNG")  # PNG, too wide
    assert validate_project(path).errors == []  # re-encoded, not refused
    out = tmp_path / "preview"
    project = load_project(path)
    now = dt.datetime(2030, 4, 1, tzinfo=dt.UTC)
    (insta,) = build_preview(project, "may-day", channel="insta", out=out, now=now)
    (image,) = insta.images
    assert (image["mime_type"], image["width"], image["height"]) == ("image/jpeg", 1440, 756)
    written = (out / "may-day" / "statement" / image["file"]).read_bytes()
    url = "https://lists.example.org/media/for/instagram/images/may-day.png"
    assert insta.as_json()["post"]["requests"][0]["json"]["image_url"] == url
    (masto,) = build_preview(project, "may-day", channel="mastodon", now=now)
    assert masto.images[0]["mime_type"] == "image/png"  # uploaded as it is

    client = web_app(project, store_engine).test_client()
    served = client.get(url.removeprefix("https://lists.example.org"))
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.data == written  # the very bytes the preview shows
    with PILImage.open(io.BytesIO(served.data)) as im:
        assert im.format == "JPEG" and im.size == (1440, 756)
    assert client.get("/media/images/may-day.png").data == big.read_bytes()
    assert client.get("/media/for/mastodon/images/may-day.png").status_code == 404
    assert client.get("/media/for/instagram/campaigns.yaml").status_code == 404
