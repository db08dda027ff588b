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
from scheduler.config.secrets import redact
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
        s = self.settings
        token = redact(s.access_token)
        path, fields = self._first(post)
        posts = [
            PreparedPost(
                method="POST",
                url=f"{s.api_base}/{path}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                json={**fields, "access_token": token},
                note="no idempotency key: the ledger records the post id as soon as it comes",
            )
        ]
        posts += [
            PreparedPost(
                method="POST",
                url=f"{s.api_base}/{{post id of part 1}}/comments",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                json={"message": post.text(index), "access_token": token},
                note=f"part {index} of {post.total}, as a comment",
            )
            for index in range(2, post.total + 1)
        ]
        return posts

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
