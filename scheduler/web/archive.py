"""The public archive: each campaign day's statement, in each language, once it went out.

URLs are the ones emails and posts already link to (`Renderer.archive_url`):
`/archive/<campaign>/<year, or date for rrule campaigns>/<lang>`. A campaign day is
published once a delivery of one of its occurrences was really sent (a post or email that
links here has gone out), and dated then. Only the statement is shown; nothing about who
received it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from sqlalchemy.engine import Engine
from werkzeug.wrappers import Response

from scheduler import calendar
from scheduler.config.model import Config
from scheduler.config.project import Project
from scheduler.content.statements import Statement, load_statement
from scheduler.errors import ConfigError, UnknownCampaignError
from scheduler.store.schema import occurrence_channels, occurrences
from scheduler.web.pages import web_state

blueprint = Blueprint("archive", __name__)

FEED_ENTRIES = 50
# Public pages may be cached a little; the statement does not change once sent.
PUBLIC_CACHE = "public, max-age=300"


@dataclass(frozen=True, slots=True)
class Published:
    """One campaign day that went out."""

    campaign: str
    key: str  # the year, or the date for rrule campaigns
    day: dt.date  # the campaign day (the URL's key)
    published_at: dt.datetime  # when its first message really went out
    languages: tuple[str, ...]


def published(engine: Engine, config: Config, campaign: str | None = None) -> list[Published]:
    """Campaign days of which something really went out, newest first, each dated when it
    first did (a hand send months early is dated then; one planned for later is not here)."""
    o, c = occurrences.c, occurrence_channels.c
    first_sent = sa.func.min(c.first_sent_at)
    query = (
        sa.select(o.id, o.campaign, first_sent)
        .join(occurrence_channels, c.occurrence_id == o.id)
        .where(c.first_sent_at.is_not(None))
        .group_by(o.id, o.campaign, o.instant)
        .order_by(o.instant.desc())
    )
    if campaign is not None:
        query = query.where(o.campaign == campaign)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    found: dict[tuple[str, str], Published] = {}
    for occurrence_id, campaign_id, at in rows:
        if campaign_id not in config.campaigns:
            continue  # removed from campaigns.yaml since
        key = str(occurrence_id).split("/")[1]
        try:
            occ = calendar.occurrence(config, occurrence_id)
        except UnknownCampaignError:
            continue
        when = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        languages = config.campaign_languages(config.campaigns[campaign_id])
        earlier = found.get((campaign_id, key))
        if earlier is not None and earlier.published_at <= when:
            continue
        found[(campaign_id, key)] = Published(campaign_id, key, occ.anchor, when, tuple(languages))
    return sorted(found.values(), key=lambda p: (p.published_at, p.campaign), reverse=True)


def statement_of(project: Project, campaign: str, language: str) -> Statement | None:
    slug = project.config.campaigns[campaign].statement
    try:
        # Read on each request: a long-running web process shows corrections to the file.
        return load_statement(project.statements_dir, slug, language)
    except ConfigError:
        return None


def _entry(campaign: str, key: str) -> Published:
    state = web_state()
    for entry in published(state.engine, state.config, campaign):
        if entry.key == key:
            return entry
    abort(404)


def _cached(
    body: str, status: int = 200, content_type: str = "text/html; charset=utf-8"
) -> Response:
    response = Response(body, status=status, content_type=content_type)
    response.headers["Cache-Control"] = PUBLIC_CACHE
    # The index speaks the browser's language: a shared cache must keep one copy per language.
    response.vary.add("Accept-Language")
    return response


@blueprint.get("/archive")
def index() -> Response:
    state = web_state()
    items = []
    for entry in published(state.engine, state.config):
        lang = request_lang(entry)
        statement = statement_of(state.project, entry.campaign, lang)
        if statement is None:
            continue
        campaign = state.config.campaigns[entry.campaign]
        items.append((entry, lang, statement, campaign.display_name(lang)))
    return _cached(render_template("archive_index.html", items=items))


def request_lang(entry: Published) -> str:
    """The page's language when the statement exists in it, else the campaign's first."""
    page = str(g.get("lang", ""))
    return page if page in entry.languages else entry.languages[0]


@blueprint.get("/archive/<campaign>/<key>")
def campaign_day(campaign: str, key: str) -> Response:
    entry = _entry(campaign, key)
    return redirect(
        url_for("archive.statement", campaign=campaign, key=key, lang=request_lang(entry))
    )


@blueprint.get("/archive/<campaign>/<key>/<lang>")
def statement(campaign: str, key: str, lang: str) -> Response:
    state = web_state()
    entry = _entry(campaign, key)
    if lang not in entry.languages:
        abort(404)
    found = statement_of(state.project, campaign, lang)
    if found is None:
        abort(404)
    # The page speaks the statement's language: its URL chose it.
    if lang in state.languages:
        g.lang = lang
    others = [x for x in entry.languages if x != lang]
    body = render_template(
        "archive_statement.html",
        entry=entry,
        statement=found,
        statement_lang=lang,
        campaign_name=state.config.campaigns[campaign].display_name(lang),
        others=others,
    )
    return _cached(body)


@blueprint.get("/archive/feed.atom")
def feed() -> Response:
    state = web_state()
    wanted = request.args.get("lang")
    items = []
    for entry in published(state.engine, state.config):
        for lang in entry.languages:
            if wanted and lang != wanted:
                continue
            found = statement_of(state.project, entry.campaign, lang)
            if found is not None:
                items.append((entry, lang, found))
        if len(items) >= FEED_ENTRIES:
            break
    base = state.config.organization.public_url.rstrip("/")
    updated = max(
        (e.published_at for e, _, _ in items), default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    )
    body = render_template(
        "feed.xml", items=items[:FEED_ENTRIES], base=base, updated=updated, wanted=wanted
    )
    return _cached(body, content_type="application/atom+xml; charset=utf-8")
