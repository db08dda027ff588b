"""`scheduler web`: refuses to run without a signing key, serves with waitress otherwise."""

from __future__ import annotations

from typing import Any

import pytest
import waitress
from conftest import ProjectFactory
from typer.testing import CliRunner
from web_helpers import WEB_YAML

from scheduler.cli import app


def test_web_refuses_to_start_without_a_secret_key(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_project(WEB_YAML)
    monkeypatch.delenv("SCHEDULER_SECRET_KEY", raising=False)
    result = CliRunner().invoke(app, ["-c", str(path), "web"])
    assert result.exit_code == 2
    assert "SCHEDULER_SECRET_KEY is not set" in result.output


def test_web_serves_the_app_with_waitress(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    path = make_project(WEB_YAML)
    monkeypatch.setenv("SCHEDULER_SECRET_KEY", "a-real-key-for-this-test")
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", f"sqlite:///{tmp_path / 'web.db'}")
    monkeypatch.setenv("SCHEDULER_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing there
    monkeypatch.delenv("SCHEDULER_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("SCHEDULER_DASHBOARD_PASSWORD_HASH", raising=False)
    served: dict[str, Any] = {}
    monkeypatch.setattr(
        waitress, "serve", lambda application, **kw: served.update(kw, app=application)
    )
    result = CliRunner().invoke(app, ["-c", str(path), "web", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    assert "dashboard is off" in result.output
    client = served["app"].test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/subscribe/members").status_code == 200
