"""Render one occurrence for one channel and language: statement + template + context."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from markupsafe import Markup

from scheduler.calendar import Occurrence
from scheduler.config.model import Campaign, Sender, Voice
from scheduler.config.project import Project
from scheduler.content.dates import localized_date
from scheduler.content.images import inspect
from scheduler.content.statements import Statement, StatementImage, load_statement, statement_folder
from scheduler.content.templates import Templates
from scheduler.errors import ConfigError, Diagnostic, TemplateError
from scheduler.tokens import Signer, json_string, secret_key, sign

DEFAULT_SUBJECT = "{{ statement.title }}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    email: str
    name: str | None
    language: str
    subscriber_id: int | None = None
    list_name: str | None = None


class RecipientLinks:
    """The signed unsubscribe and preferences URLs of one mailing's recipients: the tokens
    `Renderer.recipient_links` makes (the same bytes; tests/test_rendering.py compares them),
    with everything but the subscriber's id and address written once."""

    __slots__ = ("_prefs", "_prefs_head", "_prefs_tail", "_unsub", "_unsub_head", "_unsub_tail")

    def __init__(self, base: str, list_name: str, occurrence_id: str, key: bytes) -> None:
        # The payloads' keys in sorted order: e, l, [o,] s (tokens.sign sorts them).
        listed = f',"l":{json_string(list_name)}'
        self._unsub = Signer("unsubscribe", key)
        self._prefs = Signer("preferences", key)
        self._unsub_head = f"{base}/unsubscribe/"
        self._prefs_head = f"{base}/preferences/"
        self._unsub_tail = f'{listed},"o":{json_string(occurrence_id)},"s":'
        self._prefs_tail = f'{listed},"s":'

    def __call__(self, subscriber_id: int, email: str) -> tuple[str, str]:
        if type(subscriber_id) is not int:  # a bool or None would not be written as sign does
            raise TypeError(f"subscriber id {subscriber_id!r} is not an integer")
        address = '{"e":' + json_string(email.lower())
        ending = f"{subscriber_id}}}"
        return (
            self._unsub_head + self._unsub.sign_json(address + self._unsub_tail + ending),
            self._prefs_head + self._prefs.sign_json(address + self._prefs_tail + ending),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    language: str
    html_template: str
    text_template: str
    unsubscribe_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedPost:
    channel: str
    platform: str
    language: str
    template: str
    text: str


SAMPLE_RECIPIENT = Recipient(email="ana@example.org", name="Ana", language="en", subscriber_id=0)


class Renderer:
    """Renders occurrences of one project; statements are read once and cached."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.config = project.config
        self._statements: dict[tuple[str, str, str | None], Statement] = {}
        self._chapter_templates: dict[str, Templates] = {}
        self._step_images: dict[tuple[str, str], tuple[StatementImage, ...]] = {}

    @cached_property
    def templates(self) -> Templates:
        return Templates(self.project.templates_dir)

    def templates_for(self, chapter: str | None) -> Templates:
        """The alliance's templates, with `templates/<chapter>/` in front for a chapter."""
        if chapter is None:
            return self.templates
        if chapter not in self._chapter_templates:
            self._chapter_templates[chapter] = Templates(self.project.templates_dir, chapter)
        return self._chapter_templates[chapter]

    def warm_up(self) -> None:
        """Compile the alliance's email and post templates and load the date formats of the
        project's languages: what a long-lived process (a Celery worker) does once at its
        start rather than in its first batch of a send (70 ms of that batch, measured).
        Templates stay fresh: Jinja still checks each file's time before using it. Statements
        are not read ahead: a send reads them as they are when it needs them."""
        for name in self.templates.all_files():
            if name.startswith(("email/", "post/")):
                # A broken one is `scheduler validate`'s to report; a send using it fails.
                with contextlib.suppress(TemplateError):
                    self.templates.compile(name)
        campaigns = self.config.campaigns.values()
        languages = {lang for c in campaigns for lang in self.config.campaign_languages(c)}
        for language in sorted(languages):
            localized_date(dt.date(2000, 1, 1), language)

    def statement(self, slug: str, language: str, chapter: str | None = None) -> Statement:
        key = (slug, language, chapter)
        if key not in self._statements:
            folder = statement_folder(self.project.statements_dir, slug, chapter)
            self._statements[key] = load_statement(
                folder,
                slug,
                language,
                display_dir=self.project.relative(folder),
                images_dir=self.project.statements_dir,
            )
        return self._statements[key]

    def sender(self, campaign: Campaign, channel: str) -> Sender:
        """The sender of the campaign's mail on `channel` (`Config.sender_of`)."""
        channel_sender = dict(self.config.channels[channel].model_extra or {}).get("sender")
        return self.config.sender_of(campaign, str(channel_sender) if channel_sender else None)

    # --- language choice ------------------------------------------------------------------

    def email_language(self, campaign: Campaign, wanted: str | None) -> str:
        """The recipient's language when the campaign has it, else the speaker's default."""
        offered = self.config.campaign_languages(campaign)
        if wanted in offered:
            return str(wanted)
        default = self.config.campaign_voice(campaign).default_language
        return default if default in offered else offered[0]

    def post_language(self, campaign: Campaign, channel_name: str) -> str:
        channel = self.config.channels[channel_name]
        return self.email_language(campaign, channel.language)

    # --- context --------------------------------------------------------------------------

    def archive_url(self, occ: Occurrence, language: str) -> str:
        campaign = self.config.campaigns[occ.campaign_id]
        base = self.config.campaign_voice(campaign).public_url.rstrip("/")
        return f"{base}{archive_path(occ.campaign_id, occ.day_key, language)}"

    def images(
        self, occ: Occurrence, language: str, channel: str | None = None
    ) -> tuple[StatementImage, ...]:
        """The occurrence's images in `language` on `channel`: the step's image for that
        channel (`images: {channel: ...}`), else the step's own image, else the statement's.
        Raises ConfigError when a step's image cannot be read."""
        campaign = self.config.campaigns[occ.campaign_id]
        step = campaign.steps[occ.step_id]
        chosen = step.image_for(channel)
        if chosen is None:
            return self.statement(campaign.statement, language, campaign.chapter).images
        alt = chosen.alt.get(language) or next(iter(chosen.alt.values()), "")
        key = (chosen.file, alt)
        if key not in self._step_images:
            path = self.project.statements_dir / chosen.file
            try:
                info = inspect(path)
            except ValueError as e:
                raise ConfigError(
                    [Diagnostic(self.project.display, 0, 0, f"step {occ.step_id!r}: {e}")]
                ) from None
            self._step_images[key] = (
                StatementImage(file=chosen.file, path=path, alt=alt, info=info, line=0, column=0),
            )
        return self._step_images[key]

    def media_url(self, file: str, for_type: str | None = None) -> str:
        """Where `scheduler web` serves a statement's image: as it is, or re-encoded for a
        platform that fetches it by URL (`for_type`, e.g. instagram)."""
        base = self.config.organization.public_url.rstrip("/")
        return f"{base}/media/for/{for_type}/{file}" if for_type else f"{base}/media/{file}"

    def context(
        self,
        occ: Occurrence,
        language: str,
        recipient: Recipient | None = None,
        links: tuple[str, str] | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        campaign = self.config.campaigns[occ.campaign_id]
        voice = self.config.campaign_voice(campaign)
        statement = self.statement(campaign.statement, language, campaign.chapter)
        read_online = statement.canonical_url or self.archive_url(occ, language)
        base = voice.public_url.rstrip("/")
        archive = f"{base}/{campaign.chapter}/archive" if campaign.chapter else f"{base}/archive"
        alliance = voice_context(self.config.voice(None), language)
        chapter = voice_context(voice, language) if campaign.chapter else None
        # Email has a From; a post speaks with the voice's name (sender_context).
        is_email = channel is not None and self.config.channels[channel].type == "smtp"
        sender = self.sender(campaign, channel) if channel and is_email else None
        ctx: dict[str, Any] = {
            "organization": alliance,
            "chapter": chapter,
            # Who speaks: the chapter when there is one, else the alliance. The shipped
            # templates sign, brand and address the footer with it.
            "voice": chapter or alliance,
            "sender": sender_context(sender, voice, language),
            "campaign": {"id": occ.campaign_id, "name": campaign.display_name(language)},
            "occurrence": {
                "id": occ.id,
                "step": occ.step_id,
                "date": occ.anchor,
                "date_text": localized_date(occ.anchor, language),
                "year": occ.anchor.year,
                "local": occ.local,
                "instant": occ.instant,
                "days_to_go": (occ.anchor - occ.local.date()).days,
            },
            "statement": {
                "title": statement.title,
                "subtitle": statement.subtitle,
                "summary": statement.summary,
                "signatory": statement.signatory,
                "canonical_url": statement.canonical_url,
                "language": statement.language,
                # Rendered by markdown-it with raw HTML disabled, so safe to insert as markup.
                "html": Markup(statement.html),
                "text": statement.text,
                "url": read_online,
                "images": [
                    {
                        "url": self.media_url(image.file),
                        "alt": image.alt,
                        "width": image.info.width,
                        "height": image.info.height,
                    }
                    for image in self.images(occ, language, channel)
                ],
            },
            "hashtags": ["#" + tag for tag in campaign.hashtags.get(language, [])],
            "lang": language,
            "links": {
                "read_online": read_online,
                "archive": archive,
                "website": voice.website,
            },
        }
        if recipient is not None:
            ctx["recipient"] = {
                "name": recipient.name or "",
                "email": recipient.email,
                "language": language,
            }
            unsubscribe_url, preferences_url = links or self.recipient_links(
                campaign, recipient, occurrence_id=occ.id
            )
            ctx["unsubscribe_url"] = unsubscribe_url
            ctx["preferences_url"] = preferences_url
            ctx["unsubscribe_mailto"] = voice.unsubscribe_mailto
        return ctx

    def link_base(self, campaign: Campaign) -> str:
        """Where a campaign's recipient links point (its voice's public URL)."""
        return self.config.campaign_voice(campaign).public_url.rstrip("/")

    def recipient_links(
        self,
        campaign: Campaign,
        recipient: Recipient,
        *,
        occurrence_id: str | None = None,
        base: str | None = None,
        key: bytes | None = None,
    ) -> tuple[str, str]:
        """The signed unsubscribe and preferences URLs of one recipient. The unsubscribe
        link also names the occurrence, so unsubscribes can be counted per mailing.
        `base` (`link_base`) and `key` (`secret_key()`): given by a caller that makes many."""
        base = base if base is not None else self.link_base(campaign)
        list_name = recipient.list_name or ",".join(campaign.audience)
        data: dict[str, Any] = {
            "s": recipient.subscriber_id,
            "e": recipient.email.lower(),
            "l": list_name,
        }
        key = key or secret_key()
        unsubscribe = {**data, "o": occurrence_id} if occurrence_id else data
        return (
            f"{base}/unsubscribe/{sign('unsubscribe', unsubscribe, key)}",
            f"{base}/preferences/{sign('preferences', data, key)}",
        )

    def links_for(
        self, campaign: Campaign, list_name: str, occurrence_id: str, base: str, key: bytes
    ) -> RecipientLinks:
        """`recipient_links` for many recipients of one mailing, at about three fifths of the
        cost (the keyed HMACs and the payload's constant parts are made once)."""
        return RecipientLinks(base, list_name or ",".join(campaign.audience), occurrence_id, key)

    # --- rendering ------------------------------------------------------------------------

    def email(
        self,
        occ: Occurrence,
        recipient: Recipient,
        links: tuple[str, str] | None = None,
        channel: str | None = None,
    ) -> RenderedEmail:
        """Render the email for one recipient. `links` replaces the signed unsubscribe and
        preferences URLs (the fast path renders once with placeholders there)."""
        campaign = self.config.campaigns[occ.campaign_id]
        step = campaign.steps[occ.step_id]
        language = self.email_language(campaign, recipient.language)
        if channel is None:  # preview and validate: the step's first email channel
            channel = next(
                (
                    c
                    for c in occ.channels
                    if getattr(self.config.channels.get(c), "type", "") == "smtp"
                ),
                None,
            )
        ctx = self.context(occ, language, recipient, links, channel)
        templates = self.templates_for(campaign.chapter)
        html_name = templates.pick(templates.email_candidates(step.template, "html", language))
        text_name = templates.pick(templates.email_candidates(step.template, "txt", language))
        if html_name is None or text_name is None:
            missing = "html" if html_name is None else "txt"
            raise TemplateError(
                f"no email template {self.project.relative(self.project.templates_dir)}/"
                f"email/{step.template}.{missing} for step {occ.step_id!r} of {occ.campaign_id!r}"
            )
        subject_source = step.subject or DEFAULT_SUBJECT
        subject = templates.render_string(
            subject_source,
            ctx,
            what=f"subject of step {occ.step_id!r} in campaign {occ.campaign_id!r}",
        )
        return RenderedEmail(
            # A subject is one line whatever the statement title holds: no header injection.
            subject=re.sub(r"\s+", " ", subject).strip(),
            html=templates.inline_css(templates.render(html_name, ctx)),
            text=templates.render(text_name, ctx).strip() + "\n",
            language=language,
            html_template=html_name,
            text_template=text_name,
            unsubscribe_url=str(ctx["unsubscribe_url"]),
        )

    def post(self, occ: Occurrence, channel_name: str) -> RenderedPost:
        campaign = self.config.campaigns[occ.campaign_id]
        step = campaign.steps[occ.step_id]
        platform = self.config.channels[channel_name].type
        language = self.post_language(campaign, channel_name)
        templates = self.templates_for(campaign.chapter)
        name = templates.pick(templates.post_candidates(step.template, platform, language))
        if name is None:
            raise TemplateError(
                f"no post template {self.project.relative(self.project.templates_dir)}/"
                f"post/{step.template}.txt for step {occ.step_id!r} of {occ.campaign_id!r}"
            )
        text = templates.render(name, self.context(occ, language, channel=channel_name)).strip()
        # Collapse the blank-line runs template logic leaves behind; posts are short.
        text = re.sub(r"\n{3,}", "\n\n", text)
        return RenderedPost(
            channel=channel_name, platform=platform, language=language, template=name, text=text
        )


def archive_path(campaign_id: str, key: str, language: str) -> str:
    """`/archive/may-day/2027/es`; a chapter's: `/usa/archive/may-day/2027/es`."""
    if "/" in campaign_id:
        chapter, name = campaign_id.split("/", 1)
        return f"/{chapter}/archive/{name}/{key}/{language}"
    return f"/archive/{campaign_id}/{key}/{language}"


def voice_context(voice: Voice, language: str) -> dict[str, Any]:
    """What templates see of the alliance (`organization`) or a chapter (`chapter`)."""
    return {
        "id": voice.chapter,
        "name": voice.display_name(language),
        "website": voice.website,
        "postal_address": voice.postal_address,
        "address": voice.postal_address,
        "public_url": voice.public_url,
        "logo": voice.logo,
        "accent": voice.accent,
        "languages": list(voice.languages),
        "timezone": voice.timezone,
    }


def sender_context(sender: Sender | None, voice: Voice, language: str) -> dict[str, Any]:
    """The sender as templates see it, with the website, logo and postal address of the voice
    it speaks for; a post has no sender, so the voice's name stands in."""
    speaks_for = {
        "website": voice.website,
        "logo": voice.logo,
        "postal_address": voice.postal_address,
    }
    if sender is None:
        return {"name": voice.display_name(language), "address": None, "reply_to": None} | (
            speaks_for
        )
    return {
        "name": sender.display_name(language),
        "address": sender.address,
        "reply_to": sender.reply_to,
    } | (speaks_for)
