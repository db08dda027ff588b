"""Facebook Pages: a feed post with the statement's link, or a photo with its caption;
later parts become comments. The Graph API has no idempotency key: a post whose answer is
lost may show twice, and the ledger says so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import Field

from scheduler.channels.base import HttpsOrigin, PostRef, PreparedPost, Uploaded
from scheduler.channels.meta import GRAPH, GraphChannel, MetaSettings
from scheduler.channels.post import Post
from scheduler.content.images import ImageLimits


class FacebookSettings(MetaSettings):
    page_id: Annotated[str, Field(pattern=r"^\d+$")]
    api_base: HttpsOrigin = GRAPH


class FacebookPageChannel(GraphChannel[FacebookSettings]):
    type = "facebook"
    max_length: ClassVar[int | None] = 63_206
    Settings = FacebookSettings
    secret_fields = ("access_token",)
    # /photos fetches the image by URL: JPEG, PNG or WebP up to 10 MB.
    fetches_images = True
    image_limits = ImageLimits(max_bytes=10 * 1024 * 1024, max_images=1, reencode=True)

    def _first(self, post: Post) -> tuple[str, dict[str, str]]:
        s = self.settings
        if post.media and post.media[0].url:
            return f"{s.page_id}/photos", {"url": str(post.media[0].url), "caption": post.text(1)}
        fields = {"message": post.text(1)}
        if post.link is not None:
            fields["link"] = post.link.url
        return f"{s.page_id}/feed", fields

    def requests(self, post: Post) -> list[PreparedPost]:
        path, fields = self._first(post)
        note = "no idempotency key: the ledger records the post id as soon as it comes"
        return [
            self.prepared(path, fields, note),
            *self.prepared_comments(post, "post id of part 1"),
        ]

    def publish_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        record: Uploaded,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        if index > 1:
            return self.comment(index, post, refs, env)
        path, fields = self._first(post)
        body = self.call("POST", path, fields, action="posting part 1", env=env)
        # /photos answers the photo's id and the post's: comments go on the post.
        return PostRef(id=str(body.get("post_id") or body["id"]))
