"""`validate --strict` asks Graph's /debug_token when a Meta channel's token expires, when
the channel sets `token_check:`; it says so when the check is not configured."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL, ProjectFactory
from posting_fakes import origin, reply
from pytest_httpserver import HTTPServer

from scheduler.errors import Diagnostic
from scheduler.validate import validate_project

TOKEN = "EAAG-user-SECRET"
APP_TOKEN = "1234|app-SECRET"


def project(make_project: ProjectFactory, server: HTTPServer, *, check: bool = True) -> Path:
    token_check = ', token_check: {app_token: "${META_APP_TOKEN}"}' if check else ""
    text = MINIMAL.replace(
        "channels:\n",
        'channels:\n  insta: {type: instagram, user_id: "1784", access_token: "${IG_TOKEN}", '
        f'api_base: "{origin(server)}"{token_check}}}\n',
    ).replace("channels: [email, mastodon]", "channels: [email, insta]")
    return make_project(text)


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_TOKEN", TOKEN)
    monkeypatch.setenv("META_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("MASTODON_TOKEN", "unused")
    monkeypatch.setenv("SCHEDULER_SECRET_KEY", "k" * 32)


def debug_token(server: HTTPServer, data: dict[str, Any]) -> None:
    server.expect_request(
        "/debug_token",
        method="GET",
        query_string={"input_token": TOKEN, "access_token": APP_TOKEN},
    ).respond_with_json({"data": {"app_id": "1234", "type": "USER", **data}})


def about_the_token(path: Path, *, strict: bool = True) -> list[Diagnostic]:
    report = validate_project(path, strict=strict)
    return [d for d in report.diagnostics if "token" in d.message]


def test_a_token_expiring_within_a_week_is_reported_where_it_is_set(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    path = project(make_project, httpserver)
    debug_token(httpserver, {"is_valid": True, "expires_at": int(time.time()) + 3 * 86400 + 60})
    (d,) = about_the_token(path)
    assert "the access token expires" in d.message and "in 3 days" in d.message
    assert d.severity == "error"  # a warning, which --strict makes an error
    assert "create a new long-lived token" in (d.hint or "")
    line = path.read_text(encoding="utf-8").splitlines()[d.line - 1]
    assert "access_token" in line and d.file.endswith("campaigns.yaml")
    assert TOKEN not in d.format() and APP_TOKEN not in d.format()
    assert len(httpserver.log) == 1


def test_a_token_with_time_left_or_none_to_lose_says_nothing(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    path = project(make_project, httpserver)
    later = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).timestamp())
    debug_token(httpserver, {"is_valid": True, "expires_at": later})
    assert about_the_token(path) == []
    httpserver.clear()
    debug_token(httpserver, {"is_valid": True, "expires_at": 0})  # never expires
    assert about_the_token(path) == []


def test_a_refused_token_fails_with_the_hint_to_renew(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    path = project(make_project, httpserver)
    debug_token(httpserver, {"is_valid": False, "expires_at": 1_700_000_000})
    (d,) = about_the_token(path)
    assert d.severity == "error" and "long-lived tokens last about 60 days" in d.message


def test_an_unanswered_check_is_said_not_hidden(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    path = project(make_project, httpserver)
    httpserver.expect_request("/debug_token").respond_with_response(
        reply({"error": {"message": "down", "code": 2}}, 503)
    )
    (d,) = about_the_token(path)
    assert d.message.startswith("could not check the access token") and "503" in d.message
    assert TOKEN not in d.format() and APP_TOKEN not in d.format()


def test_without_token_check_the_check_is_skipped_with_a_word(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    path = project(make_project, httpserver, check=False)
    (d,) = about_the_token(path)
    assert d.severity == "note" and "expiry is not checked" in d.message
    assert "token_check: {app_token: ${META_APP_TOKEN}}" in (d.hint or "")
    assert validate_project(path, strict=True).ok  # a note stops nothing
    assert httpserver.log == []


def test_only_strict_asks_the_platform(
    make_project: ProjectFactory, httpserver: HTTPServer
) -> None:
    path = project(make_project, httpserver)
    assert about_the_token(path, strict=False) == []
    assert httpserver.log == []
