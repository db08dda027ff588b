"""Platforms as a local HTTP server (pytest-httpserver) replies like them, for posting tests.

Each fake keeps what was posted, checks the credentials it was given, and can be told to
fail, rate-limit or answer too late (after it has taken the post).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from bluesky_lexicon import LexiconError, check_post
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
    # /api/v2/media: each upload (description, bytes, content type); how many GETs of a
    # 202 upload answer 206 (still processing) before 200.
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    processing_polls: int = 0
    media_script: list[int] = field(default_factory=list)
    uploads: int = 0

    def install(self) -> FakeMastodon:
        self.server.expect_request("/api/v2/instance", method="GET").respond_with_handler(
            self.instance
        )
        self.server.expect_request("/api/v2/media", method="POST").respond_with_handler(self.upload)
        self.server.expect_request(
            re.compile(r"^/api/v1/media/\d+$"), method="GET"
        ).respond_with_handler(self.media_status)
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

    def upload(self, request: Request) -> Response:
        """POST /api/v2/media: multipart `file` and `description`; 202 while processing."""
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return reply({"error": "The access token is invalid"}, 401)
        self.uploads += 1
        if self.media_script:
            return reply({"error": "unavailable"}, self.media_script.pop(0))
        file = request.files.get("file")
        if file is None:
            return reply({"error": "Validation failed: File can't be blank"}, 422)
        media_id = str(500 + len(self.media))
        data = file.read()
        self.media[media_id] = {
            "description": request.form.get("description"),
            "bytes": data,
            "content_type": file.mimetype,
            "polls_left": self.processing_polls,
        }
        attachment = self._attachment(media_id)
        return reply(attachment, 202 if self.processing_polls else 200)

    def _attachment(self, media_id: str) -> dict[str, Any]:
        m = self.media[media_id]
        done = m["polls_left"] == 0
        return {
            "id": media_id,
            "type": "image",
            "url": f"https://files.example/{media_id}.png" if done else None,
            "description": m["description"],
        }

    def media_status(self, request: Request) -> Response:
        media_id = request.path.rsplit("/", 1)[1]
        if media_id not in self.media:
            return reply({"error": "Record not found"}, 404)
        m = self.media[media_id]
        if m["polls_left"] > 0:
            m["polls_left"] -= 1
            return reply(self._attachment(media_id), 206)
        return reply(self._attachment(media_id))

    def post(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return reply({"error": "The access token is invalid"}, 401)
        for media_id in (request.get_json() or {}).get("media_ids", []):
            if media_id not in self.media or self.media[media_id]["polls_left"]:
                return reply({"error": "Validation failed: Media not found or processing"}, 422)
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
    blobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # cid -> mime, bytes
    blob_uploads: int = 0
    valid_records: int = 0  # createRecord bodies that matched the app.bsky.feed.post lexicon

    def install(self) -> FakePds:
        x = "/xrpc/"
        s = self.server
        s.expect_request(x + "com.atproto.repo.uploadBlob", method="POST").respond_with_handler(
            self.upload_blob
        )
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

    @staticmethod
    def cid(rkey: str) -> str:
        """The record's CID (its shape only: base32, as a PDS gives it)."""
        return "bafyrei" + hashlib.sha256(rkey.encode()).hexdigest()[:40]

    def create_record(self, request: Request) -> Response:
        refused = self._authorized(request)
        if refused:
            return refused
        body = request.get_json()
        rkey = body["rkey"]
        self.creates.append(rkey)
        problems = self.embed_problems(body["record"])
        try:
            # As a PDS does: a record of a known collection must match its lexicon.
            check_post(body["record"])
            self.valid_records += 1
        except LexiconError as e:
            problems.append(str(e))
        if problems:
            return reply({"error": "InvalidRecord", "message": "; ".join(problems)}, 400)
        action = self.script.pop(0) if self.script else None
        if isinstance(action, int):
            return reply({"error": "InternalServerError"}, action)
        if rkey in self.records:  # a taken record key: the PDS answers 500, not a clear error
            return reply({"error": "InternalServerError", "message": "Internal Server Error"}, 500)
        self.records[rkey] = body
        if action == "slow":
            time.sleep(self.slow_seconds)
        return reply({"uri": self.uri(rkey), "cid": self.cid(rkey)})

    def upload_blob(self, request: Request) -> Response:
        """com.atproto.repo.uploadBlob: the raw bytes, their type in Content-Type; the
        app's limit for images is 1,000,000 bytes."""
        refused = self._authorized(request)
        if refused:
            return refused
        self.blob_uploads += 1
        data = request.get_data()
        mime = request.headers.get("Content-Type", "")
        if not mime.startswith("image/"):
            return reply({"error": "InvalidRequest", "message": "not an image"}, 400)
        if len(data) > 1_000_000:
            return reply({"error": "BlobTooLarge", "message": "over 1000000 bytes"}, 400)
        cid = "bafkrei" + hashlib.sha256(data).hexdigest()[:20]
        self.blobs[cid] = {"mime": mime, "bytes": data}
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(data)}
        return reply({"blob": blob})

    def embed_problems(self, record: dict[str, Any]) -> list[str]:
        """What app.bsky.embed.images / .external require of a post's embed."""
        embed = record.get("embed")
        if embed is None:
            return []
        found = []

        def blob_ok(blob: Any) -> bool:
            return (
                isinstance(blob, dict)
                and blob.get("$type") == "blob"
                and blob.get("ref", {}).get("$link") in self.blobs
                and isinstance(blob.get("size"), int)
                and str(blob.get("mimeType", "")).startswith("image/")
            )

        if embed.get("$type") == "app.bsky.embed.images":
            images = embed.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                found.append("images: 1 to 4 required")
            for image in images or []:
                if not isinstance(image.get("alt"), str):
                    found.append("image.alt is required")
                if not blob_ok(image.get("image")):
                    found.append("image.image must be an uploaded blob")
                ratio = image.get("aspectRatio", {})
                if not all(
                    isinstance(ratio.get(k), int) and ratio[k] > 0 for k in ("width", "height")
                ):
                    found.append("aspectRatio needs positive integer width and height")
        elif embed.get("$type") == "app.bsky.embed.external":
            external = embed.get("external", {})
            for key in ("uri", "title", "description"):
                if not isinstance(external.get(key), str):
                    found.append(f"external.{key} is required")
            if "thumb" in external and not blob_ok(external["thumb"]):
                found.append("external.thumb must be an uploaded blob")
        else:
            found.append(f"unknown embed type {embed.get('$type')!r}")
        return found

    def get_record(self, request: Request) -> Response:
        rkey = request.args["rkey"]
        self.lookups.append(rkey)
        if rkey not in self.records:
            return reply({"error": "RecordNotFound", "message": "Could not locate record"}, 400)
        return reply(
            {"uri": self.uri(rkey), "cid": self.cid(rkey), "value": self.records[rkey]["record"]}
        )

    def thread(self) -> list[dict[str, Any]]:
        return [body["record"] for body in self.records.values()]


def discord_body(request: Request) -> dict[str, Any]:
    """A Discord webhook execution, JSON or multipart (payload_json and files[n]), as Discord
    reads it; each attachment must name a file part that was sent."""
    if request.mimetype == "multipart/form-data":
        body: dict[str, Any] = json.loads(request.form["payload_json"])
        for attachment in body.get("attachments", []):
            assert f"files[{attachment['id']}]" in request.files, attachment
        body["files"] = {name: f.read() for name, f in request.files.items()}
        return body
    found: dict[str, Any] = request.get_json()
    return found
