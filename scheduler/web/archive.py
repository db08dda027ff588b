"""The public archive: each campaign day's statement, in each language, once it went out.

URLs are the ones emails and posts already link to (`Renderer.archive_url`):
`/archive/<campaign>/<year, or date for rrule campaigns>/<lang>`, and for a chapter's campaigns
`/<chapter>/archive/<campaign>/<key>/<lang>`. Each chapter has its archive and feed
(`/<chapter>/archive`, `/<chapter>/archive/feed.atom`); the alliance's show its own statements
and those of the chapters named in `organization.archive_chapters`. A campaign day is
published once a delivery of one of its occurrences was really sent (a post or email that
links here has gone out), and dated then. Only the statement is shown; nothing about who
received it.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from sqlalchemy.engine import Engine
from werkzeug.wrappers import Response

from scheduler import calendar
from scheduler.channels import CHANNEL_CLASSES
from scheduler.config.model import Config, chapter_campaign_id
from scheduler.config.project import Project
from scheduler.content.images import Encoded, ImageLimits, encode_for
from scheduler.content.statements import Statement, load_statement, statement_folder
from scheduler.errors import ConfigError, UnknownCampaignError
from scheduler.store.schema import occurrence_channels, occurrences
from scheduler.web.pages import page_chapter, page_voice, web_state

blueprint = Blueprint("archive", __name__)

FEED_ENTRIES = 50
# Public pages may be cached a little; the statement does not change once sent.
PUBLIC_CACHE = "public, max-age=300"


@dataclass(frozen=True, slots=True)
class Published:
    """One campaign day that went out."""

    campaign: str  # the campaign's id: `may-day`, or `usa/may-day` for a chapter's
    key: str  # the year, or the date for rrule campaigns
    day: dt.date  # the campaign day (the URL's key)
    published_at: dt.datetime  # when its first message really went out
    languages: tuple[str, ...]
    chapter: str | None = None

    @property
    def name(self) -> str:
        """The campaign's id within its chapter (`may-day`): the URL's campaign part."""
        return self.campaign.split("/", 1)[-1]


def published(
    engine: Engine,
    config: Config,
    campaign: str | None = None,
    chapters: frozenset[str | None] | None = None,
) -> list[Published]:
    """Campaign days of which something really went out, newest first, each dated when it
    first did (a hand send months early is dated then; one planned for later is not here);
    only those of `chapters` (None in it: the alliance's own) when given."""
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
        owner = config.campaigns[campaign_id].chapter
        if chapters is not None and owner not in chapters:
            continue
        key = str(occurrence_id).rsplit("/", 2)[1]
        try:
            occ = calendar.occurrence(config, occurrence_id)
        except UnknownCampaignError:
            continue
        when = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        languages = config.campaign_languages(config.campaigns[campaign_id])
        earlier = found.get((campaign_id, key))
        if earlier is not None and earlier.published_at <= when:
            continue
        found[(campaign_id, key)] = Published(
            campaign_id, key, occ.anchor, when, tuple(languages), owner
        )
    return sorted(found.values(), key=lambda p: (p.published_at, p.campaign), reverse=True)


def statement_of(project: Project, campaign: str, language: str) -> Statement | None:
    found = project.config.campaigns[campaign]
    folder = statement_folder(project.statements_dir, found.statement, found.chapter)
    try:
        # Read on each request: a long-running web process shows corrections to the file.
        return load_statement(folder, found.statement, language, images_dir=project.statements_dir)
    except ConfigError:
        return None


def shown_chapters() -> frozenset[str | None]:
    """Whose statements this archive shows: a chapter's own, or the alliance's and the
    chapters it chose."""
    chapter = page_chapter()
    if chapter is not None:
        return frozenset({chapter})
    return frozenset({None, *web_state().config.organization.archive_chapters})


def _campaign_id(chapter: str | None, campaign: str) -> str:
    return chapter_campaign_id(chapter, campaign) if chapter else campaign


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
@blueprint.get("/<chapter>/archive")
def index(chapter: str | None = None) -> Response:
    state = web_state()
    items = []
    for entry in published(state.engine, state.config, chapters=shown_chapters()):
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
@blueprint.get("/<chapter>/archive/<campaign>/<key>")
def campaign_day(campaign: str, key: str, chapter: str | None = None) -> Response:
    entry = _entry(_campaign_id(chapter, campaign), key)
    return redirect(
        url_for(
            "archive.statement",
            chapter=chapter,
            campaign=campaign,
            key=key,
            lang=request_lang(entry),
        )
    )


@blueprint.get("/archive/<campaign>/<key>/<lang>")
@blueprint.get("/<chapter>/archive/<campaign>/<key>/<lang>")
def statement(campaign: str, key: str, lang: str, chapter: str | None = None) -> Response:
    state = web_state()
    campaign = _campaign_id(chapter, campaign)
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
    base = state.config.organization.public_url.rstrip("/")
    body = render_template(
        "archive_statement.html",
        entry=entry,
        statement=found,
        statement_lang=lang,
        campaign_name=state.config.campaigns[campaign].display_name(lang),
        others=others,
        page_url=f"{base}/archive/{campaign}/{key}/{lang}",
        image=found.images[0] if found.images else None,
        image_url=f"{base}/media/{found.images[0].file}" if found.images else None,
        site_name=state.config.organization.name,
    )
    return _cached(body)


@blueprint.get("/media/<path:name>")
def media(name: str) -> Response:
    """A statement's image, for link cards, emails and platforms that fetch by URL. Only
    files some statement names are served: the statements folder holds drafts too."""
    state = web_state()
    if name not in _named_images(state.project):
        abort(404)
    response = send_from_directory(state.project.statements_dir, name, max_age=86400)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/media/for/<channel_type>/<path:name>")
def media_for(channel_type: str, name: str) -> Response:
    """A statement's image as a platform that fetches it by URL takes it (Instagram: a JPEG
    of at most 8 MB and 1440 pixels wide), re-encoded once per process."""
    state = web_state()
    cls = CHANNEL_CLASSES.get(channel_type)
    if cls is None or not cls.fetches_images or name not in _named_images(state.project):
        abort(404)
    path = state.project.statements_dir / name
    try:
        encoded = _encoded(path, path.stat().st_mtime_ns, cls.image_limits or ImageLimits())
    except (OSError, ValueError):
        abort(404)
    response = Response(encoded.data, mimetype=encoded.mime)
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@functools.lru_cache(maxsize=8)
def _encoded(path: Path, mtime_ns: int, limits: ImageLimits) -> Encoded:
    # `mtime_ns` is part of the key: an image replaced on disk is encoded again.
    return encode_for(path, limits)


def _named_images(project: Project) -> set[str]:
    names: set[str] = set()
    for campaign_id, campaign in project.config.campaigns.items():
        for step in campaign.steps.values():
            names.update(image.file for image in (step.image, *step.images.values()) if image)
        for lang in project.config.campaign_languages(campaign):
            found = statement_of(project, campaign_id, lang)
            if found is not None:
                names.update(image.file for image in found.images)
    return names


@blueprint.get("/archive/feed.atom")
@blueprint.get("/<chapter>/archive/feed.atom")
def feed(chapter: str | None = None) -> Response:
    state = web_state()
    wanted = request.args.get("lang")
    items = []
    for entry in published(state.engine, state.config, chapters=shown_chapters()):
        for lang in entry.languages:
            if wanted and lang != wanted:
                continue
            found = statement_of(state.project, entry.campaign, lang)
            if found is not None:
                items.append((entry, lang, found))
        if len(items) >= FEED_ENTRIES:
            break
    base = page_voice().public_url.rstrip("/")
    updated = max(
        (e.published_at for e, _, _ in items), default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    )
    body = render_template(
        "feed.xml", items=items[:FEED_ENTRIES], base=base, updated=updated, wanted=wanted
    )
    return _cached(body, content_type="application/atom+xml; charset=utf-8")
