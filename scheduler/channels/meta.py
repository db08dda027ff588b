"""What Meta's Graph APIs (Facebook Pages, Instagram, Threads) share: a long-lived access
token as `${VAR}`, form-encoded calls, the OAuth error that means "renew the token", and
the container flow (create, record, wait until processed, publish).

A container's id is recorded (as an upload) before it is published, so a retry publishes
that container, or finds it published, and never creates a second post.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import requests

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    PartPosted,
    PostRef,
    SecretRef,
    Uploaded,
)
from scheduler.channels.http import HttpClient, PermanentPostError, TransientPostError
from scheduler.channels.post import Post

GRAPH = "https://graph.facebook.com/v21.0"
# OAuthException: the token expired, was revoked, or lost a permission.
_TOKEN_ERRORS = frozenset({102, 190})
RENEW = (
    "the access token was refused (long-lived tokens last about 60 days): create a new "
    "long-lived token and update the environment variable"
)


class MetaSettings(ChannelSettings):
    access_token: SecretRef


MetaSettingsT = TypeVar("MetaSettingsT", bound=MetaSettings)


def graph_check(http: HttpClient, response: requests.Response, action: str) -> dict[str, Any]:
    """The JSON of a successful Graph API answer; a token error is permanent, with the hint
    to renew the token."""
    if response.status_code in (400, 401, 403):
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        if isinstance(error, dict) and error.get("code") in _TOKEN_ERRORS:
            raise PermanentPostError(
                f"{http.what}: {action}: HTTP {response.status_code} OAuthException; {RENEW}",
                status=response.status_code,
            )
    checked = http.check(response, action=action, hints={400: "the Graph API refused it"})
    try:
        body = checked.json()
    except ValueError:
        raise PermanentPostError(f"{http.what}: {action}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise PermanentPostError(f"{http.what}: {action}: unexpected answer")
    return body


class GraphChannel(Channel[MetaSettingsT]):
    """A Graph API channel that publishes through containers."""

    api: ClassVar[str] = GRAPH
    status_field: ClassVar[str] = "status_code"  # Instagram; Threads calls it "status"
    poll_seconds: ClassVar[float] = 2.0
    poll_attempts: ClassVar[int] = 30

    def api_base(self) -> str:
        base = getattr(self.settings, "api_base", None)
        return str(base or self.api)

    def call(
        self,
        method: str,
        path: str,
        fields: Mapping[str, str],
        *,
        action: str,
        env: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        http = self.client(env)
        form = {**fields, "access_token": self.secret("access_token", env)}
        url = f"{self.api_base()}/{path}"
        if method == "GET":
            response = http.request("GET", url, action=action, params=form)
        else:
            response = http.request("POST", url, action=action, form=form)
        return graph_check(http, response, action)

    def publish_container(
        self,
        name: str,
        create: tuple[str, Mapping[str, str]],
        publish_path: str,
        post: Post,
        on_uploaded: Uploaded | None,
        env: Mapping[str, str] | None,
    ) -> str:
        """Create (or reuse the recorded) container `name`, wait until it is processed and
        publish it; the published id."""
        action = f"publishing {name}"
        container = post.uploaded.get(name)
        if container is not None:
            status = self._status(container, action, env)
            if status == "PUBLISHED":
                return container  # an earlier attempt published it; its answer was lost
            if status in ("EXPIRED", "ERROR"):
                container = None  # made again: an expired container cannot be published
        if container is None:
            path, fields = create
            container = str(self.call("POST", path, fields, action=action, env=env)["id"])
            if on_uploaded is not None:
                on_uploaded(name, container)
        for _ in range(self.poll_attempts):
            status = self._status(container, action, env)
            if status == "FINISHED":
                break
            if status in ("ERROR", "EXPIRED"):
                raise PermanentPostError(f"{self.what()}: {action}: the container is {status}")
            if status == "PUBLISHED":
                return container
            time.sleep(self.poll_seconds)
        else:
            raise TransientPostError(f"{self.what()}: {action}: still processing")
        body = self.call("POST", publish_path, {"creation_id": container}, action=action, env=env)
        return str(body["id"])

    def _status(self, container: str, action: str, env: Mapping[str, str] | None) -> str:
        body = self.call(
            "GET", container, {"fields": self.status_field}, action=f"{action}: status", env=env
        )
        return str(body.get(self.status_field, ""))

    def send(
        self,
        post: Post,
        *,
        posted: Sequence[PostRef] = (),
        on_posted: PartPosted | None = None,
        on_uploaded: Uploaded | None = None,
        maybe_posted: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> list[PostRef]:
        refs = list(posted)
        uploaded = dict(post.uploaded)

        def record(name: str, remote: str) -> None:
            uploaded[name] = remote
            if on_uploaded is not None:
                on_uploaded(name, remote)

        for index in range(len(refs) + 1, post.total + 1):
            ref = self.publish_part(index, post.replace(uploaded=uploaded), refs, record, env)
            refs.append(ref)
            if on_posted is not None:
                on_posted(index, ref)
        return refs

    def publish_part(
        self,
        index: int,
        post: Post,
        refs: list[PostRef],
        record: Uploaded,
        env: Mapping[str, str] | None,
    ) -> PostRef:
        raise NotImplementedError

    def comment(
        self, index: int, post: Post, refs: list[PostRef], env: Mapping[str, str] | None
    ) -> PostRef:
        """Parts after the first as comments on the first (Instagram, Facebook)."""
        body = self.call(
            "POST",
            f"{refs[0].id}/comments",
            {"message": post.text(index)},
            action=f"commenting part {index} of {post.total}",
            env=env,
        )
        return PostRef(id=str(body["id"]))
