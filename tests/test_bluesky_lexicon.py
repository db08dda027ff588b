"""The records Bluesky channels send match the app.bsky.feed.post lexicon (see
tests/bluesky_lexicon.py; the fake PDS checks every record a test posts), and the check
refuses what the lexicon refuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bluesky_lexicon import LexiconError, check_post

from scheduler.channels import LinkCard, Post
from scheduler.channels.bluesky import BlueskyChannel
from scheduler.config.model import Channel as ChannelConfig

NOW = "2030-05-01T07:00:00.000Z"
BLOB = {"$type": "blob", "ref": {"$link": "bafkreiabcdefgh"}, "mimeType": "image/png", "size": 9}


def record(**fields: Any) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.post", "text": "May Day", "createdAt": NOW, **fields}


def images(**image: Any) -> dict[str, Any]:
    one = {"$type": "app.bsky.embed.images#image", "image": BLOB, "alt": "Nine figures", **image}
    return {"$type": "app.bsky.embed.images", "images": [one]}


def test_a_post_with_an_image_a_card_facets_and_a_reply_is_valid() -> None:
    ref = {"uri": "at://did:plc:abc/app.bsky.feed.post/3kabc", "cid": "bafyreiabcdefgh"}
    facet = {
        "index": {"byteStart": 0, "byteEnd": 3},
        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "May"}],
    }
    check_post(record(embed=images(aspectRatio={"width": 4, "height": 3}), facets=[facet]))
    external = {"uri": "https://example.org/x", "title": "T", "description": "D", "thumb": BLOB}
    card = record(embed={"$type": "app.bsky.embed.external", "external": external})
    check_post(card | {"reply": {"root": ref, "parent": ref}, "langs": ["es"]})


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (record(text="é" * 301), "301 graphemes"),
        (record(text="x" * 3001), "refuses"),
        ({"$type": "app.bsky.feed.post", "text": "no date"}, "createdAt"),
        (record(createdAt="yesterday"), "refuses"),
        (record(langs=["en", "es", "fr", "de"]), "langs"),
        (record(embed=images(alt=None)), "alt"),
        (record(embed=images(image={"$type": "blob", "mimeType": "image/png"})), "refuses"),
        (record(embed={"$type": "app.bsky.embed.external", "external": {"uri": "x"}}), "title"),
        (
            record(
                facets=[
                    {
                        "index": {"byteStart": 2, "byteEnd": 40},
                        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "x"}],
                    }
                ]
            ),
            "outside the text",
        ),
        (record(**{"$type": "app.bsky.feed.like"}), "not 'app.bsky.feed.post'"),
    ],
)
def test_the_check_refuses_what_the_lexicon_refuses(bad: dict[str, Any], why: str) -> None:
    with pytest.raises(LexiconError, match=why):
        check_post(bad)


def test_every_record_a_preview_shows_has_the_lexicon_shape() -> None:
    sky = BlueskyChannel.from_config(
        "sky",
        ChannelConfig(type="bluesky", handle="alliance.bsky.social", app_password="${P}"),
    )
    text = "Workers of every country #MayDay https://example.org/may-day " + "and more " * 60
    link = LinkCard(url="https://example.org/may-day", title="May Day", description="Why")
    parts = tuple(sky.split(text))
    at = dt.datetime(2030, 5, 1, 7, tzinfo=dt.UTC)
    post = Post(key="may-day/2030/statement/sky", language="en", parts=parts, link=link, at=at)
    records = [r.json["record"] for r in sky.requests(post) if r.json and "record" in r.json]
    assert len(records) == len(parts) > 1
    for shown in records:
        check_post(shown, strict=False)  # placeholders stand for the CIDs and the DID
