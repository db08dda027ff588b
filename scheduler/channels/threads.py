"""Threads: posts of up to 500 characters through the Threads API, long text as a reply
chain, each part a container that is recorded before it is published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import Field

from scheduler.channels.base import HttpsOrigin, PostRef, PreparedPost, Uploaded
from scheduler.channels.meta import GraphChannel, MetaSettings
from scheduler.channels.post import Post
from scheduler.content.images import ImageLimits

API = "https://graph.threads.net/v1.0"
UserId = Annotated[str, Field(pattern=r"^(me|\d+)$")]


class ThreadsSettings(MetaSettings):
    user_id: UserId = "me"
    api_base: HttpsOrigin = API


class ThreadsChannel(GraphChannel[ThreadsSettings]):
    """No idempotency key, but the container is: a retry publishes the recorded container
    or finds it published."""

    type = "threads"
    max_length: ClassVar[int | None] = 500
    Settings = ThreadsSettings
    secret_fields = ("access_token",)
    idempotent = True
    api = API
    status_field = "status"
    # Images are fetched from their public URL: JPEG or PNG, at most 8 MB, 320-1440 wide.
    fetches_images = True
    image_limits = ImageLimits(
        reencode=True,
        max_bytes=8 * 1024 * 1024,
        formats=frozenset({"JPEG", "PNG"}),
        min_width=320,
        max_width=1440,
        max_aspect=10,
        max_images=1,
    )

    def _fields(self, index: int, post: Post, reply_to: str | None) -> dict[str, str]:
        image = post.media[0] if index == 1 and post.media and post.media[0].url else None
        fields = {"media_type": "IMAGE" if image else "TEXT", "text": post.text(index)}
        if image is not None:
            fields |= {"image_url": str(image.url), "alt_text": image.alt}
        if reply_to is not None:
            fields["reply_to_id"] = reply_to
        return fields

    def requests(self, post: Post) -> list[PreparedPost]:
        return [
            self.prepared(
                f"{self.settings.user_id}/threads",
                self._fields(index, post, f"{{id of part {index - 1}}}" if index > 1 else None),
                "a container, recorded before POST /threads_publish publishes it",
            )
            for index in range(1, post.total + 1)
        ]

    def publish_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        record: Uploaded,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        s = self.settings
        reply_to = refs[-1].id if index > 1 else None
        published = self.publish_container(
            f"container/{index}",
            (f"{s.user_id}/threads", self._fields(index, post, reply_to)),
            f"{s.user_id}/threads_publish",
            post,
            record,
            env,
        )
        return PostRef(id=published)
