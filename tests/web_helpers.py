"""Building blocks for the web tests: a project with a public list, the app on a real store,
the CSRF token of a page, the confirmation emails a `file:` channel wrote."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from conftest import ProjectFactory
from delivery_helpers import EMAIL_ONLY, context
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from scheduler.config.project import Project, load_project
from scheduler.tokens import sign
from scheduler.web import DashboardAuth, Limits, Mailer, MemoryHits, Sends, create_app

DASHBOARD_TOKEN = "organizers-only-token"

WEB_YAML = EMAIL_ONLY.replace(
    "  members: {source: members.csv}\n",
    "  members: {name: Members and supporters, source: members.csv, public: true}\n"
    "  press: {name: Press and allies, public: false}\n"
    "  news: {name: Quick news, public: true}\n",
)


def web_project(
    make_project: ProjectFactory,
    *,
    smtp_url: str = "file:outbox",
    public_url: str = "https://lists.example.org",
) -> Project:
    text = WEB_YAML.replace('url: "file:outbox"', f'url: "{smtp_url}"').replace(
        "  languages: [en, es]\n", f"  languages: [en, es]\n  public_url: {public_url}\n"
    )
    return load_project(make_project(text, members_csv="email\n"))


def web_app(project: Project, engine: Engine, **kwargs: Any) -> Flask:
    """The app with a synchronous mailer and sends (the email is there when the response is)."""
    kwargs.setdefault("mailer", Mailer(context(project, engine), background=False))
    kwargs.setdefault("sends", Sends(engine, background=False))
    kwargs.setdefault("hits", MemoryHits())
    kwargs.setdefault("limits", Limits())
    kwargs.setdefault("dashboard", DashboardAuth(token=DASHBOARD_TOKEN))
    app = create_app(project, engine, **kwargs)
    app.testing = True
    return app


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the page has no CSRF field"
    return m[1]


def page(client: FlaskClient, url: str, **kwargs: Any) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def subscribe(
    client: FlaskClient,
    email_address: str,
    *,
    list_name: str = "members",
    ip: str = "127.0.0.1",
    **fields: str,
) -> Any:
    """Fill in and send the subscribe form, from `ip`."""
    token = csrf(page(client, f"/subscribe/{list_name}"))
    data = {"csrf_token": token, "email": email_address, "name": "", "language": "en", **fields}
    return client.post(f"/subscribe/{list_name}", data=data, environ_base={"REMOTE_ADDR": ip})


def letters(project: Project) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox_dir(project).glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def confirmation_path(message: EmailMessage) -> str:
    m = re.search(r"https?://[^/\s]+(/confirm/\S+)", text_of(message))
    assert m, text_of(message)
    return m[1]


def subscriber_token(purpose: str, subscriber_id: int, address: str, lists: str = "members") -> str:
    """A link token as `Renderer.recipient_links` makes it."""
    return sign(purpose, {"s": subscriber_id, "e": address.lower(), "l": lists})


def outbox_dir(project: Project) -> Path:
    return project.base_dir / "outbox"
