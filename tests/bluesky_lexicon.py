"""Bluesky records checked against the `app.bsky.feed.post` lexicon, through the models the
`atproto` SDK generates from the lexicons (embeds, facets, blobs, string formats), plus the
limits those models leave out: the text's 300 graphemes and facets inside its UTF-8 bytes."""

from __future__ import annotations

from typing import Any

import regex
from atproto_client import models
from pydantic import ValidationError

MAX_GRAPHEMES = 300  # app.bsky.feed.post#text maxGraphemes


class LexiconError(AssertionError):
    """A record the lexicon refuses."""


def check_post(record: dict[str, Any], *, strict: bool = True) -> models.AppBskyFeedPost.Record:
    """The record as the SDK's model; LexiconError says what the lexicon refuses.
    `strict=False` leaves string formats (datetime, CID, URI) unchecked: for previews,
    whose records hold placeholders such as `{cid of part 1}`."""
    if record.get("$type") != "app.bsky.feed.post":
        raise LexiconError(f"$type is {record.get('$type')!r}, not 'app.bsky.feed.post'")
    try:
        model = models.AppBskyFeedPost.Record.model_validate(
            record, context={"strict_string_format": strict}
        )
    except ValidationError as e:
        raise LexiconError(f"app.bsky.feed.post refuses the record: {e}") from None
    text = record["text"]
    graphemes = len(regex.findall(r"\X", text))
    if graphemes > MAX_GRAPHEMES:
        raise LexiconError(f"text is {graphemes} graphemes, over {MAX_GRAPHEMES}")
    size = len(text.encode("utf-8"))
    for facet in record.get("facets") or []:
        index = facet["index"]
        if not 0 <= index["byteStart"] < index["byteEnd"] <= size:
            raise LexiconError(f"facet {index} is outside the text's {size} bytes")
        for feature in facet["features"]:
            if feature["$type"] not in (
                "app.bsky.richtext.facet#link",
                "app.bsky.richtext.facet#tag",
                "app.bsky.richtext.facet#mention",
            ):
                raise LexiconError(f"unknown facet feature {feature['$type']!r}")
    embed = record.get("embed")
    if embed is not None and not isinstance(
        model.embed, (models.AppBskyEmbedImages.Main, models.AppBskyEmbedExternal.Main)
    ):
        raise LexiconError(f"embed {embed.get('$type')!r} is not one this project sends")
    return model
