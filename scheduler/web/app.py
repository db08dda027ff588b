"""The Flask application: subscriber pages, the public archive and the organizers' dashboard.

`create_app(project, engine)` builds it; `scheduler web` serves it. Everything the views need
lives in one `WebState` kept in `app.extensions`, so tests can hand in a synchronous mailer,
their own rate limits or dashboard credentials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Flask, g, redirect, request, url_for
from jinja2 import StrictUndefined
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from scheduler.channels import sends_email
from scheduler.config.project import Project
from scheduler.content.dates import install_date_filters
from scheduler.delivery.context import DeliveryContext
from scheduler.delivery.letters import Mailer
from scheduler.tokens import secret_key as env_secret_key
from scheduler.web import actions as dashboard_actions
from scheduler.web import archive, i18n, provider_hooks, signup, subscriber
from scheduler.web.auth import DashboardAuth
from scheduler.web.csrf import csrf_token
from scheduler.web.pages import (
    EXTENSION,
    WebState,
    message_page,
    page_chapter,
    page_voice,
    t,
    use_chapter,
    use_language,
    voice_for_page,
)
from scheduler.web.ratelimit import HitCounter, Limits, MemoryHits
from scheduler.web.sends import Sends

log = logging.getLogger(__name__)

# No inline script or style anywhere: the pages need no JavaScript, and the CSS is a file.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    # Unsubscribe and preference URLs carry a token: never send them on as a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "interest-cohort=()",
}


def _flask_secret(key: bytes) -> bytes:
    # Derived, not the link key itself: a session cookie and a link never share a key.
    return hmac.new(key, b"scheduler-web-session", hashlib.sha256).digest()


def create_app(
    project: Project,
    engine: Engine,
    *,
    secret_key: bytes | None = None,
    mailer: Mailer | None = None,
    hits: HitCounter | None = None,
    limits: Limits | None = None,
    dashboard: DashboardAuth | None = None,
    now: Callable[[], dt.datetime] | None = None,
    trusted_proxies: int = 0,
    sends: Sends | None = None,
) -> Flask:
    """The web application for `project` on the store `engine` (migrated by the caller).

    Defaults: links checked with SCHEDULER_SECRET_KEY, confirmations sent in the background
    through the first smtp channel, rate limits counted in this process, dashboard
    credentials from the environment, the dashboard's sends in background threads.
    `trusted_proxies`: how many reverse proxies put the
    client's address into X-Forwarded-For (0: use the connection's address).
    """
    app = Flask(__name__)
    # A misspelt variable in a page template fails the test suite instead of showing nothing.
    app.jinja_env.undefined = StrictUndefined
    install_date_filters(app.jinja_env)  # `| date`: dates in the page's language
    key = secret_key or env_secret_key()
    if mailer is None and any(map(sends_email, project.config.channels.values())):
        mailer = Mailer(DeliveryContext(project, engine))
    state = WebState(
        project=project,
        engine=engine,
        key=key,
        mailer=mailer,
        hits=hits or MemoryHits(),
        limits=limits or Limits(),
        dashboard=dashboard if dashboard is not None else DashboardAuth.from_env(),
        sends=sends or Sends(engine),
    )
    if now is not None:
        state.now = now
    app.extensions[EXTENSION] = state
    app.config.update(
        SECRET_KEY=_flask_secret(key),
        SESSION_COOKIE_NAME="scheduler_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=project.config.organization.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=8),
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    if trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies
        )

    app.register_blueprint(signup.blueprint)
    app.register_blueprint(subscriber.blueprint)
    app.register_blueprint(archive.blueprint)
    # actions.py adds its routes to dashboard.py's blueprint (imported here, not by
    # dashboard.py, so the two modules do not import each other).
    app.register_blueprint(dashboard_actions.blueprint)
    app.register_blueprint(provider_hooks.blueprint)

    @app.before_request
    def _language() -> None:
        chapter = (request.view_args or {}).get("chapter")
        use_chapter(str(chapter) if chapter else None)
        use_language()

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "t": t,
            "lang": g.get("lang", i18n.FALLBACK),
            # Who speaks on this page: a chapter under /<chapter>/ (or reached by a link to its
            # list), else the alliance. `alliance` is always the alliance.
            "org": voice_for_page(page_voice(), g.get("lang", i18n.FALLBACK)),
            "alliance": voice_for_page(state.config.voice(None), g.get("lang", i18n.FALLBACK)),
            "chapter": page_chapter(),
            "page_languages": state.languages,
            "language_name": lambda code: i18n.translate(code, "language_name"),
            "lang_url": _lang_url,
            "csrf_token": csrf_token,
        }

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        # Pages reached by a signed link or a login must not sit in shared caches.
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(HTTPException)
    def _error(error: HTTPException) -> tuple[str, int] | HTTPException:
        if error.code == 404:
            return message_page("not_found_title", "not_found_body", 404)
        if error.code == 400:
            return message_page("bad_request_title", "bad_request_body", 400)
        if error.code == 403:
            return message_page("forbidden_title", "forbidden_body", 403)
        if error.code == 429:
            return message_page("too_many_title", "too_many_body", 429)
        return error

    @app.get("/")
    def home() -> Response:
        return redirect(url_for("signup.index"))

    @app.get("/healthz")
    def healthz() -> tuple[str, int, dict[str, str]]:
        with state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}

    return app


def _lang_url(code: str) -> str:
    args = {k: v for k, v in request.args.items() if k != "lang"}
    args["lang"] = code
    return f"{request.path}?{urlencode(args)}"
