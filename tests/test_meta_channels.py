"""Facebook Pages, Instagram and Threads through fakes of Meta's Graph APIs: containers
recorded before publishing, so a retry never creates a second post; a refused token is a
permanent failure that says to renew it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL, ProjectFactory
from PIL import Image
from posting_fakes import origin, reply
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from scheduler.channels import LinkCard, Media, Post, from_config
from scheduler.channels.http import PermanentPostError, TransientPostError
from scheduler.channels.meta import GraphChannel
from scheduler.config.model import Channel as ChannelConfig
from scheduler.content.images import inspect
from scheduler.validate import validate_project

TOKEN = "EAAG-SECRET-long-lived"
ENV = {"META_TOKEN": TOKEN}
IMAGE = Path(__file__).resolve().parent.parent / "statements" / "images" / "may-day.png"
IMAGE_URL = "https://lists.example.org/media/images/may-day.png"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GraphChannel, "poll_seconds", 0.01)


class FakeGraph:
    """Containers (POST /{user}/media or /threads), their status, publishing, feed/photos
    and comments, as the Graph API answers them (form-encoded, access_token in the body)."""

    def __init__(self, server: HTTPServer, status_field: str) -> None:
        self.status_field = status_field
        self.ids = itertools.count(9000)
        self.containers: dict[str, dict[str, Any]] = {}
        self.published: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.polls_before_ready = 1
        self.publish_script: list[Any] = []
        server.expect_request("/").respond_with_handler(self.handle)  # never hit
        server.expect_request(__import__("re").compile(r"^/.+$")).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        fields = dict(request.form) if request.method == "POST" else dict(request.args)
        if fields.pop("access_token", None) != TOKEN:
            return reply(
                {
                    "error": {
                        "message": "Error validating access token",
                        "type": "OAuthException",
                        "code": 190,
                    }
                },
                400,
            )
        path = request.path.strip("/")
        self.calls.append((f"{request.method} {path}", fields))
        if request.method == "GET":
            c = self.containers[path]
            if c["polls"] > 0:
                c["polls"] -= 1
                return reply({"id": path, self.status_field: "IN_PROGRESS"})
            return reply({"id": path, self.status_field: c["status"]})
        if path.endswith(("/media", "/threads")):
            cid = str(next(self.ids))
            self.containers[cid] = {
                **fields,
                "polls": self.polls_before_ready,
                "status": "FINISHED",
            }
            return reply({"id": cid})
        if path.endswith(("/media_publish", "/threads_publish")):
            c = self.containers[fields["creation_id"]]
            assert c["status"] == "FINISHED", "a container is published once"
            c["status"] = "PUBLISHED"
            self.published.append(c)
            if self.publish_script:
                action = self.publish_script.pop(0)
                if action == "lost":  # published, but the answer never arrives
                    return reply({"error": {"message": "unavailable"}}, 503)
            return reply({"id": f"m{fields['creation_id']}"})
        post_id = f"p{next(self.ids)}"
        self.published.append({"path": path, **fields})
        return reply(
            {"id": post_id, "post_id": f"page_{post_id}"} if "photos" in path else {"id": post_id}
        )


def media(url: str | None = IMAGE_URL) -> Media:
    info = inspect(IMAGE)
    return Media(
        name="images/may-day.png",
        path=IMAGE,
        alt="Nine figures",
        mime=info.mime,
        width=info.width,
        height=info.height,
        size=info.size,
        url=url,
    )


def channel(kind: str, server: HTTPServer, **settings: Any) -> Any:
    c = from_config(
        kind,
        ChannelConfig(type=kind, access_token="${META_TOKEN}", api_base=origin(server), **settings),
    )
    c.timeout = (1.0, 1.0)
    return c


def test_threads_publishes_a_reply_chain_with_the_image_and_its_alt_text(
    httpserver: HTTPServer,
) -> None:
    graph = FakeGraph(httpserver, "status")
    threads = channel("threads", httpserver, user_id="42")
    post = Post(key="k", language="en", parts=("one (1/2)", "two (2/2)"), media=(media(),))
    recorded: list[tuple[str, str]] = []
    refs = threads.send(post, env=ENV, on_uploaded=lambda n, r: recorded.append((n, r)))
    first, second = graph.published
    assert first["media_type"] == "IMAGE" and first["image_url"] == IMAGE_URL
    assert first["alt_text"] == "Nine figures" and first["text"] == "one (1/2)"
    assert second["media_type"] == "TEXT" and second["reply_to_id"] == refs[0].id
    assert [n for n, _ in recorded] == ["container/1", "container/2"]


def test_a_retry_publishes_the_recorded_container_and_never_a_second_post(
    httpserver: HTTPServer,
) -> None:
    graph = FakeGraph(httpserver, "status_code")
    insta = channel("instagram", httpserver, user_id="1784")
    graph.publish_script = ["lost"]
    post = Post(key="k", language="en", parts=("May Day #MayDay",), media=(media(),))
    recorded: dict[str, str] = {}
    with pytest.raises(TransientPostError):
        insta.send(post, env=ENV, on_uploaded=recorded.__setitem__)
    assert list(recorded) == ["container"] and len(graph.published) == 1
    (ref,) = insta.send(post.replace(uploaded=recorded), env=ENV)
    assert ref.id == recorded["container"]  # found published: not created or published again
    assert len(graph.published) == 1 and len(graph.containers) == 1
    assert graph.containers[ref.id or ""]["caption"] == "May Day #MayDay"


def test_an_expired_container_is_made_again(httpserver: HTTPServer) -> None:
    graph = FakeGraph(httpserver, "status_code")
    insta = channel("instagram", httpserver, user_id="1784")
    post = Post(key="k", language="en", parts=("hi",), media=(media(),))
    old = "8000"
    graph.containers[old] = {"polls": 0, "status": "EXPIRED"}
    insta.send(post.replace(uploaded={"container": old}), env=ENV)
    assert len(graph.published) == 1 and graph.published[0]["image_url"] == IMAGE_URL


def test_instagram_caption_limits_and_comments(httpserver: HTTPServer) -> None:
    graph = FakeGraph(httpserver, "status_code")
    insta = channel("instagram", httpserver, user_id="1784")
    assert not insta.fits(" ".join(f"#tag{i}" for i in range(31)))
    assert insta.fits(" ".join(f"#tag{i}" for i in range(30)))
    post = Post(key="k", language="en", parts=("a", "b"), media=(media(),))
    refs = insta.send(post, env=ENV)
    assert graph.calls[-1] == (f"POST {refs[0].id}/comments", {"message": "b"})
    with pytest.raises(PermanentPostError, match="need an image"):
        insta.send(Post(key="k2", language="en", parts=("a",)), env=ENV)


def test_facebook_page_posts_the_link_or_the_photo(httpserver: HTTPServer) -> None:
    graph = FakeGraph(httpserver, "status_code")
    page = channel("facebook", httpserver, page_id="123")
    link = LinkCard(url="https://example.org/may-day", title="May Day")
    page.send(Post(key="k", language="en", parts=("text",), link=link), env=ENV)
    assert graph.calls[-1] == ("POST 123/feed", {"message": "text", "link": link.url})
    (ref,) = page.send(Post(key="k", language="en", parts=("cap",), media=(media(),)), env=ENV)
    assert graph.calls[-1] == ("POST 123/photos", {"url": IMAGE_URL, "caption": "cap"})
    assert ref.id and ref.id.startswith("page_")


def test_a_refused_token_is_permanent_and_says_to_renew_it(httpserver: HTTPServer) -> None:
    FakeGraph(httpserver, "status")
    threads = channel("threads", httpserver)
    with pytest.raises(PermanentPostError) as info:
        threads.send(Post(key="k", language="en", parts=("x",)), env={"META_TOKEN": "old-tok"})
    message = str(info.value)
    assert "OAuthException" in message and "about 60 days" in message
    assert "create a new long-lived token" in message and "old-tok" not in message


def test_an_instagram_step_without_an_image_fails_validate(make_project: ProjectFactory) -> None:
    text = MINIMAL.replace(
        "channels:\n",
        'channels:\n  insta: {type: instagram, user_id: "1784", access_token: "${IG_TOKEN}"}\n',
    ).replace("channels: [email, mastodon]", "channels: [email, insta]")
    path = make_project(text)
    statement = path.parent / "statements" / "may-day.es.md"
    source = statement.read_text(encoding="utf-8")
    head, _, rest = source.partition("\nimage:\n")
    statement.write_text(head + "\n---\n" + rest.split("\n---\n", 1)[1], encoding="utf-8")
    messages = [d.message for d in validate_project(path).errors]
    assert any("instagram posts need an image" in m and "es" in m for m in messages)
    # The example PNG is not refused: `scheduler web` serves Instagram a JPEG of it.
    assert not any("instagram would refuse images/may-day.png" in m for m in messages)


def test_what_re_encoding_cannot_mend_is_refused_for_instagram(
    make_project: ProjectFactory,
) -> None:
    text = MINIMAL.replace(
        "channels:\n",
        'channels:\n  insta: {type: instagram, user_id: "1784", access_token: "${IG_TOKEN}"}\n',
    ).replace("channels: [email, mastodon]", "channels: [email, insta]")
    path = make_project(text)
    Image.new("RGB", (1000, 2000), "red").save(path.parent / "statements/images/may-day.png")
    messages = [d.message for d in validate_project(path).errors]
    assert any(
        m.startswith("instagram would refuse images/may-day.png: aspect ratio 1000:2000")
        for m in messages
    )
