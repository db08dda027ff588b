"""Instagram: content publishing for a professional account. An image is required; the
caption holds at most 2,200 characters and 30 hashtags, and later parts become comments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import Field

from scheduler.channels.base import HttpsOrigin, PostRef, PreparedPost, Uploaded
from scheduler.channels.http import PermanentPostError
from scheduler.channels.meta import GRAPH, GraphChannel, MetaSettings
from scheduler.channels.post import Post
from scheduler.content.images import ImageLimits

MAX_HASHTAGS = 30


class InstagramSettings(MetaSettings):
    user_id: Annotated[str, Field(pattern=r"^\d+$", description="the Instagram user id")]
    api_base: HttpsOrigin = GRAPH


class InstagramChannel(GraphChannel[InstagramSettings]):
    type = "instagram"
    max_length: ClassVar[int | None] = 2200
    Settings = InstagramSettings
    secret_fields = ("access_token",)
    idempotent = True  # the recorded container
    needs_image = True
    # Content publishing: JPEG only, at most 8 MB, 320-1440 wide, aspect 4:5 to 1.91:1;
    # re-encoded by `scheduler web` to fit (the aspect ratio is the organizer's choice).
    fetches_images = True
    image_limits = ImageLimits(
        reencode=True,
        max_bytes=8 * 1024 * 1024,
        formats=frozenset({"JPEG"}),
        min_width=320,
        max_width=1440,
        min_aspect=4 / 5,
        max_aspect=1.91,
        max_images=1,
    )

    def fits(self, text: str) -> bool:
        hashtags = sum(1 for word in text.split() if word.startswith("#") and len(word) > 1)
        return super().fits(text) and hashtags <= MAX_HASHTAGS

    def _container(self, post: Post) -> dict[str, str]:
        if not post.media or not post.media[0].url:
            raise PermanentPostError(
                f"{self.what()}: Instagram posts need an image; name one in the statement"
            )
        return {"image_url": str(post.media[0].url), "caption": post.text(1)}

    def requests(self, post: Post) -> list[PreparedPost]:
        image = post.media[0].url if post.media else None
        container = self.prepared(
            f"{self.settings.user_id}/media",
            {"image_url": str(image), "caption": post.text(1)},
            "a container, recorded before POST /media_publish publishes it",
        )
        return [container, *self.prepared_comments(post, "media id of part 1")]

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
        s = self.settings
        published = self.publish_container(
            "container",
            (f"{s.user_id}/media", self._container(post)),
            f"{s.user_id}/media_publish",
            post,
            record,
            env,
        )
        return PostRef(id=published)
