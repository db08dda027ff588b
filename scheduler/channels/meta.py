"""What Meta's Graph APIs (Facebook Pages, Instagram, Threads) share: a long-lived access
token as `${VAR}`, form-encoded calls, the OAuth error that means "renew the token", and
the container flow (create, record, wait until processed, publish).

A container's id is recorded (as an upload) before it is published, so a retry publishes
that container, or finds it published, and never creates a second post.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from scheduler.channels.base import (
    Channel,
    ChannelSettings,
    PartPosted,
    PostRef,
    PreparedPost,
    SecretRef,
    SettingProblem,
    Uploaded,
)
from scheduler.channels.http import HttpClient, PermanentPostError, TransientPostError
from scheduler.channels.post import Post
from scheduler.config.secrets import redact, resolve
from scheduler.errors import SecretError

if TYPE_CHECKING:
    import requests

GRAPH = "https://graph.facebook.com/v21.0"
# OAuthException: the token expired, was revoked, or lost a permission.
_TOKEN_ERRORS = frozenset({102, 190})
RENEW = (
    "the access token was refused (long-lived tokens last about 60 days): create a new "
    "long-lived token and update the environment variable"
)


class TokenCheck(BaseModel):
    """`token_check:` — ask Graph's /debug_token, in `validate --strict`, when the access
    token expires; warn `warn_days` ahead. `app_token` is an app access token (`APP|SECRET`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_token: SecretRef
    warn_days: Annotated[int, Field(ge=1, le=60)] = 7


class MetaSettings(ChannelSettings):
    access_token: SecretRef
    token_check: TokenCheck | None = None


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

    def strict_problems(self, env: Mapping[str, str] | None = None) -> list[SettingProblem]:
        check = self.settings.token_check
        if check is None:
            return [
                SettingProblem(
                    "access_token",
                    f"{self.what()}: the token's expiry is not checked (no token_check)",
                    "to have `validate --strict` warn before it expires, add "
                    "token_check: {app_token: ${META_APP_TOKEN}}",
                    severity="note",
                )
            ]
        action = "checking the access token (debug_token)"
        try:
            token = self.secret("access_token", env)
            app_token = resolve(str(check.app_token), env)
            # A client of its own: both tokens travel in the query and are redacted.
            http = HttpClient(self.what(), timeout=self.timeout, secrets=[token, app_token])
            response = http.request(
                "GET",
                f"{self.api_base()}/debug_token",
                action=action,
                params={"input_token": token, "access_token": app_token},
            )
            body = graph_check(http, response, action)
        except (PermanentPostError, TransientPostError, SecretError) as e:
            problem = f"could not check the access token: {e}"
            return [SettingProblem("token_check", problem, severity="warning")]
        found = body.get("data")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        if not data.get("is_valid", False):
            return [SettingProblem("access_token", f"{self.what()}: {RENEW}")]
        expires = int(data.get("expires_at") or 0)
        if expires == 0:
            return []  # a page token made from a long-lived user token does not expire
        left = dt.datetime.fromtimestamp(expires, dt.UTC) - dt.datetime.now(dt.UTC)
        if left > dt.timedelta(days=check.warn_days):
            return []
        when = dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return [
            SettingProblem(
                "access_token",
                f"{self.what()}: the access token expires {when}, in {_days(left)}",
                "create a new long-lived token and update the environment variable",
                severity="warning",
            )
        ]

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

    def prepared(self, path: str, fields: Mapping[str, str], note: str) -> PreparedPost:
        """A Graph call as a preview shows it: form-encoded, the token as `${VAR}`."""
        token = redact(self.settings.access_token)
        return PreparedPost(
            method="POST",
            url=f"{self.api_base()}/{path}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            json={**fields, "access_token": token},
            note=note,
        )

    def prepared_comments(self, post: Post, first: str) -> list[PreparedPost]:
        """Parts after the first as comments on `first` (a placeholder for its id)."""
        return [
            self.prepared(
                f"{{{first}}}/comments",
                {"message": post.text(index)},
                f"part {index} of {post.total}, as a comment",
            )
            for index in range(2, post.total + 1)
        ]

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


def _days(left: dt.timedelta) -> str:
    if left.total_seconds() <= 0:
        return "the past: it has expired"
    days = left.days
    return f"{days} day{'s' if days != 1 else ''}" if days else "less than a day"
