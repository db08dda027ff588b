"""What every page view shares: the `WebState` of the running app, the page's language and
the few helpers that render a page. The blueprints and `app.create_app` import this; it imports
none of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import abort, current_app, g, render_template, request
from sqlalchemy.engine import Engine

from scheduler.config.model import Config, Voice
from scheduler.config.project import Project
from scheduler.delivery.letters import Mailer
from scheduler.web import i18n
from scheduler.web.auth import DashboardAuth
from scheduler.web.ratelimit import HitCounter, Limits
from scheduler.web.sends import Sends

EXTENSION = "scheduler_web"


@dataclass
class WebState:
    project: Project
    engine: Engine
    key: bytes  # signs and checks the links (SCHEDULER_SECRET_KEY)
    mailer: Mailer | None  # None: no smtp channel, so nobody can sign up
    hits: HitCounter
    limits: Limits
    dashboard: DashboardAuth
    sends: Sends  # where "Send now", "Retry failed" and "Send still planned" run
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    @property
    def config(self) -> Config:
        return self.project.config

    @property
    def languages(self) -> list[str]:
        """The languages the current page can speak: its chapter's, or the alliance's."""
        return i18n.page_languages(page_voice().languages)


def web_state() -> WebState:
    state: WebState = current_app.extensions[EXTENSION]
    return state


# --- whose page: the alliance's, or a chapter's ---------------------------------------------


def use_chapter(chapter: str | None) -> None:
    """Speak for `chapter` on this page (404 for an unknown one). Pages under `/<chapter>/`
    get it from their URL; pages reached by a link, from the list the link names."""
    if chapter is not None and chapter not in web_state().config.chapters:
        abort(404)
    g.chapter = chapter


def page_chapter() -> str | None:
    chapter = g.get("chapter")
    return str(chapter) if chapter else None


def page_voice() -> Voice:
    return web_state().config.voice(page_chapter())


@dataclass(frozen=True, slots=True)
class PageVoice:
    """The speaker as page templates see it (`org`), with its name in the page's language."""

    chapter: str | None
    name: str
    website: str
    postal_address: str
    languages: tuple[str, ...]
    default_language: str
    logo: str | None
    accent: str


def voice_for_page(voice: Voice, language: str) -> PageVoice:
    return PageVoice(
        chapter=voice.chapter,
        name=voice.display_name(language),
        website=voice.website,
        postal_address=voice.postal_address,
        languages=voice.languages,
        default_language=voice.default_language,
        logo=voice.logo,
        accent=voice.accent,
    )


def t(key: str, **values: object) -> str:
    return i18n.translate(g.get("lang", i18n.FALLBACK), key, **values)


def use_language(stored: str | None = None) -> str:
    """Pick the page's language (see `scheduler.web.i18n`); a view that knows the
    subscriber passes their stored language."""
    state = web_state()
    usable = state.languages
    g.lang = i18n.choose(
        usable,
        page_voice().default_language,
        asked=request.args.get("lang"),
        stored=stored,
        accepted=request.accept_languages.best_match(usable),
    )
    return str(g.lang)


@contextmanager
def speaking(language: str) -> Iterator[None]:
    """Render in `language` for a while (an email in the subscriber's language)."""
    previous = g.get("lang", i18n.FALLBACK)
    g.lang = language if language in web_state().languages else previous
    try:
        yield
    finally:
        g.lang = previous


def client_ip() -> str:
    return request.remote_addr or "unknown"


def render_page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status


def message_page(title: str, body: str, status: int, note: str | None = None) -> tuple[str, int]:
    return render_page(
        "message.html", status, title=t(title), body=t(body), note=t(note) if note else None
    )


def masked_address(email: str) -> str:
    """`a•••@example.org`: enough for a person to recognize their address on a page opened
    from a link, too little for anyone else who sees the screen or the link."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"
