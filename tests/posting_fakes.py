"""Platforms as a local HTTP server (pytest-httpserver) replies like them, for posting tests.

Each fake keeps what was posted, checks the credentials it was given, and can be told to
fail, rate-limit or answer too late (after it has taken the post).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

TOKEN = "tok-SECRET-1234"
APP_PASSWORD = "app-SECRET-pass"
BOT_TOKEN = "123456:SECRET-bot"


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def origin(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")


@dataclass
class FakeMastodon:
    """/api/v2/instance and /api/v1/statuses with Idempotency-Key memory."""

    server: HTTPServer
    max_characters: int = 500
    url_weight: int = 23
    statuses: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts_per_key: dict[str, int] = field(default_factory=dict)
    # Scripted answers for the next POSTs: a status code, "slow" (take it, answer late),
    # or ("429", seconds).
    script: list[Any] = field(default_factory=list)
    slow_seconds: float = 0.6
    instance_reads: int = 0

    def install(self) -> FakeMastodon:
        self.server.expect_request("/api/v2/instance", method="GET").respond_with_handler(
            self.instance
        )
        self.server.expect_request("/api/v1/statuses", method="POST").respond_with_handler(
            self.post
        )
        return self

    def instance(self, request: Request) -> Response:
        self.instance_reads += 1
        return reply(
            {
                "domain": "social.example",
                "configuration": {
                    "statuses": {
                        "max_characters": self.max_characters,
                        "characters_reserved_per_url": self.url_weight,
                    }
                },
            }
        )

    def post(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return reply({"error": "The access token is invalid"}, 401)
        key = request.headers["Idempotency-Key"]
        self.posts_per_key[key] = self.posts_per_key.get(key, 0) + 1
        action = self.script.pop(0) if self.script else None
        if callable(action):  # something to happen meanwhile, then a 503
            action()
            return reply({"error": "unavailable"}, 503)
        if isinstance(action, tuple):
            return reply({"error": "Too many requests"}, 429, {"Retry-After": action[1]})
        if isinstance(action, int):
            return reply({"error": "oops"}, action)
        if key not in self.by_key:  # what Mastodon does with a repeated key: the same status
            body = request.get_json()
            status = {"id": str(1000 + len(self.statuses)), **body}
            self.statuses.append(status)
            self.by_key[key] = status
        if action == "slow":
            time.sleep(self.slow_seconds)
        return reply(self.by_key[key])


@dataclass
class FakePds:
    """The XRPC calls a Bluesky PDS answers for posting."""

    server: HTTPServer
    did: str = "did:plc:alliance123"
    handle: str = "alliance.bsky.social"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: list[str] = field(default_factory=list)  # rkeys, in call order
    lookups: list[str] = field(default_factory=list)
    logins: int = 0
    refreshes: int = 0
    access: str = "access-1"
    expired: set[str] = field(default_factory=set)
    script: list[Any] = field(default_factory=list)  # for createRecord: status or "slow"
    slow_seconds: float = 0.6

    def install(self) -> FakePds:
        x = "/xrpc/"
        s = self.server
        s.expect_request(
            x + "com.atproto.server.createSession", method="POST"
        ).respond_with_handler(self.create_session)
        s.expect_request(
            x + "com.atproto.server.refreshSession", method="POST"
        ).respond_with_handler(self.refresh_session)
        s.expect_request(x + "com.atproto.repo.createRecord", method="POST").respond_with_handler(
            self.create_record
        )
        s.expect_request(x + "com.atproto.repo.getRecord", method="GET").respond_with_handler(
            self.get_record
        )
        return self

    def session(self) -> dict[str, str]:
        return {
            "did": self.did,
            "handle": self.handle,
            "accessJwt": self.access,
            "refreshJwt": f"refresh-{self.access}",
        }

    def create_session(self, request: Request) -> Response:
        body = request.get_json()
        if body != {"identifier": self.handle, "password": APP_PASSWORD}:
            return reply({"error": "AuthenticationRequired", "message": "Invalid password"}, 401)
        self.logins += 1
        return reply(self.session())

    def refresh_session(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer refresh-{self.access}":
            return reply({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        self.refreshes += 1
        self.access = f"access-{self.refreshes + 1}"
        return reply(self.session())

    def _authorized(self, request: Request) -> Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.expired:
            return reply({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        if token != self.access:
            return reply({"error": "InvalidToken", "message": "Bad token"}, 401)
        return None

    def uri(self, rkey: str) -> str:
        return f"at://{self.did}/app.bsky.feed.post/{rkey}"

    def create_record(self, request: Request) -> Response:
        refused = self._authorized(request)
        if refused:
            return refused
        body = request.get_json()
        rkey = body["rkey"]
        self.creates.append(rkey)
        action = self.script.pop(0) if self.script else None
        if isinstance(action, int):
            return reply({"error": "InternalServerError"}, action)
        if rkey in self.records:  # a taken record key: the PDS answers 500, not a clear error
            return reply({"error": "InternalServerError", "message": "Internal Server Error"}, 500)
        self.records[rkey] = body
        if action == "slow":
            time.sleep(self.slow_seconds)
        return reply({"uri": self.uri(rkey), "cid": f"cid-{rkey}"})

    def get_record(self, request: Request) -> Response:
        rkey = request.args["rkey"]
        self.lookups.append(rkey)
        if rkey not in self.records:
            return reply({"error": "RecordNotFound", "message": "Could not locate record"}, 400)
        return reply(
            {"uri": self.uri(rkey), "cid": f"cid-{rkey}", "value": self.records[rkey]["record"]}
        )

    def thread(self) -> list[dict[str, Any]]:
        return [body["record"] for body in self.records.values()]
