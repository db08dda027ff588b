"""Shared fixtures: a throwaway project folder built from the shipped example content."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Fixture modules shared by many test files: the store engines (SQLite and PostgreSQL) and
# a real SMTP server.
pytest_plugins = ("conftest_store", "smtp_server", "dovecot_server")

MINIMAL = """\
organization:
  name: Test Org
  website: https://example.org
  postal_address: 1 Main Street, Town
  timezone: Europe/Madrid
  languages: [en, es]
senders:
  org: {name: Test Org, address: news@example.org}
lists:
  members: {source: members.csv}
channels:
  email: {type: smtp, url: "file:outbox", sender: org}
  mastodon: {type: mastodon, instance: "https://social.example.org", token: "${MASTODON_TOKEN}"}
campaigns:
  may-day:
    name: May Day
    date: "05-01"
    time: "09:00"
    statement: may-day
    audience: [members]
    steps:
      statement:
        channels: [email, mastodon]
        template: statement
"""

MEMBERS_CSV = "email,name,language\nana@example.org,Ana,es\nbo@example.org,Bo,en\n"

ProjectFactory = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write campaigns.yaml (dedented) into a folder with the example statements and
    templates; returns the path of campaigns.yaml."""

    def make(yaml_text: str = MINIMAL, *, members_csv: str = MEMBERS_CSV) -> Path:
        shutil.copytree(ROOT / "statements", tmp_path / "statements", dirs_exist_ok=True)
        shutil.copytree(ROOT / "templates", tmp_path / "templates", dirs_exist_ok=True)
        (tmp_path / "members.csv").write_text(members_csv, encoding="utf-8")
        path = tmp_path / "campaigns.yaml"
        path.write_text(textwrap.dedent(yaml_text), encoding="utf-8")
        return path

    return make
