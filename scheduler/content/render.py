"""Render one occurrence for one channel and language: statement + template + context."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from markupsafe import Markup

from scheduler.calendar import Occurrence
from scheduler.config.model import Campaign
from scheduler.config.project import Project
from scheduler.content.statements import Statement, load_statement
from scheduler.content.templates import Templates
from scheduler.errors import TemplateError
from scheduler.tokens import secret_key, sign

DEFAULT_SUBJECT = "{{ statement.title }}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    email: str
    name: str | None
    language: str
    subscriber_id: int | None = None
    list_name: str | None = None


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
        self._statements: dict[tuple[str, str], Statement] = {}

    @cached_property
    def templates(self) -> Templates:
        return Templates(self.project.templates_dir)

    def statement(self, slug: str, language: str) -> Statement:
        key = (slug, language)
        if key not in self._statements:
            self._statements[key] = load_statement(
                self.project.statements_dir,
                slug,
                language,
                display_dir=self.project.relative(self.project.statements_dir),
            )
        return self._statements[key]

    # --- language choice ------------------------------------------------------------------

    def email_language(self, campaign: Campaign, wanted: str | None) -> str:
        """The recipient's language when the campaign has it, else the organization default."""
        offered = self.config.campaign_languages(campaign)
        if wanted in offered:
            return str(wanted)
        default = self.config.organization.default_language
        return default if default in offered else offered[0]

    def post_language(self, campaign: Campaign, channel_name: str) -> str:
        channel = self.config.channels[channel_name]
        return self.email_language(campaign, channel.language)

    # --- context --------------------------------------------------------------------------

    def archive_url(self, occ: Occurrence, language: str) -> str:
        key = occ.id.split("/")[1]
        base = self.config.organization.public_url.rstrip("/")
        return f"{base}/archive/{occ.campaign_id}/{key}/{language}"

    def context(
        self,
        occ: Occurrence,
        language: str,
        recipient: Recipient | None = None,
        links: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        org = self.config.organization
        campaign = self.config.campaigns[occ.campaign_id]
        statement = self.statement(campaign.statement, language)
        read_online = statement.canonical_url or self.archive_url(occ, language)
        base = org.public_url.rstrip("/")
        ctx: dict[str, Any] = {
            "organization": {
                "name": org.name,
                "website": org.website,
                "postal_address": org.postal_address,
                "languages": list(org.languages),
            },
            "campaign": {"id": occ.campaign_id, "name": campaign.display_name(language)},
            "occurrence": {
                "id": occ.id,
                "step": occ.step_id,
                "date": occ.anchor,
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
            },
            "lang": language,
            "links": {
                "read_online": read_online,
                "archive": f"{base}/archive",
                "website": org.website,
            },
        }
        if recipient is not None:
            ctx["recipient"] = {
                "name": recipient.name or "",
                "email": recipient.email,
                "language": language,
            }
            unsubscribe_url, preferences_url = links or self.recipient_links(campaign, recipient)
            ctx["unsubscribe_url"] = unsubscribe_url
            ctx["preferences_url"] = preferences_url
        return ctx

    def recipient_links(self, campaign: Campaign, recipient: Recipient) -> tuple[str, str]:
        """The signed unsubscribe and preferences URLs of one recipient."""
        base = self.config.organization.public_url.rstrip("/")
        list_name = recipient.list_name or ",".join(campaign.audience)
        data = {"s": recipient.subscriber_id, "e": recipient.email.lower(), "l": list_name}
        key = secret_key()
        return (
            f"{base}/unsubscribe/{sign('unsubscribe', data, key)}",
            f"{base}/preferences/{sign('preferences', data, key)}",
        )

    # --- rendering ------------------------------------------------------------------------

    def email(
        self, occ: Occurrence, recipient: Recipient, links: tuple[str, str] | None = None
    ) -> RenderedEmail:
        """Render the email for one recipient. `links` replaces the signed unsubscribe and
        preferences URLs (the fast path renders once with placeholders there)."""
        campaign = self.config.campaigns[occ.campaign_id]
        step = campaign.steps[occ.step_id]
        language = self.email_language(campaign, recipient.language)
        ctx = self.context(occ, language, recipient, links)
        html_name = self.templates.pick(
            self.templates.email_candidates(step.template, "html", language)
        )
        text_name = self.templates.pick(
            self.templates.email_candidates(step.template, "txt", language)
        )
        if html_name is None or text_name is None:
            missing = "html" if html_name is None else "txt"
            raise TemplateError(
                f"no email template {self.project.relative(self.project.templates_dir)}/"
                f"email/{step.template}.{missing} for step {occ.step_id!r} of {occ.campaign_id!r}"
            )
        subject_source = step.subject or DEFAULT_SUBJECT
        subject = self.templates.render_string(
            subject_source,
            ctx,
            what=f"subject of step {occ.step_id!r} in campaign {occ.campaign_id!r}",
        )
        return RenderedEmail(
            # A subject is one line whatever the statement title holds: no header injection.
            subject=re.sub(r"\s+", " ", subject).strip(),
            html=self.templates.inline_css(self.templates.render(html_name, ctx)),
            text=self.templates.render(text_name, ctx).strip() + "\n",
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
        name = self.templates.pick(
            self.templates.post_candidates(step.template, platform, language)
        )
        if name is None:
            raise TemplateError(
                f"no post template {self.project.relative(self.project.templates_dir)}/"
                f"post/{step.template}.txt for step {occ.step_id!r} of {occ.campaign_id!r}"
            )
        text = self.templates.render(name, self.context(occ, language)).strip()
        # Collapse the blank-line runs template logic leaves behind; posts are short.
        text = re.sub(r"\n{3,}", "\n\n", text)
        return RenderedPost(
            channel=channel_name, platform=platform, language=language, template=name, text=text
        )
