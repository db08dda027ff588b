"""What each channel would get for one campaign: emails as files, posts with their lengths."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler import calendar
from scheduler.calendar import Occurrence
from scheduler.channels import Post, get_channel_class
from scheduler.config.diagnostics import did_you_mean
from scheduler.config.project import Project
from scheduler.content.message import build_email
from scheduler.content.render import SAMPLE_RECIPIENT, Recipient, Renderer
from scheduler.delivery.emailing import email_settings, sender_for
from scheduler.delivery.posting import delivery_key, metadata_for
from scheduler.errors import UnknownCampaignError

PREVIEW_RECIPIENT_NAMES = {"en": "Ana Example", "es": "Ana Ejemplo"}


@dataclass
class PostPart:
    text: str
    length: int


@dataclass
class PreviewItem:
    occurrence: Occurrence
    channel: str
    type: str
    language: str
    kind: str = "post"
    limit: int | None = None
    text: str = ""
    parts: list[PostPart] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    email_headers: dict[str, str] = field(default_factory=dict)
    email_text: str = ""
    email_html: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def is_email(self) -> bool:
        return self.kind == "email"

    @property
    def over_limit(self) -> bool:
        return self.limit is not None and any(p.length > self.limit for p in self.parts)

    def as_json(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "occurrence": self.occurrence.id,
            "instant": self.occurrence.instant.isoformat(),
            "channel": self.channel,
            "type": self.type,
            "language": self.language,
        }
        if self.is_email:
            base["email"] = {
                "headers": self.email_headers,
                "text": self.email_text,
                "html": self.email_html,
            }
        else:
            base["post"] = {
                "text": self.text,
                "limit": self.limit,
                "parts": [{"text": p.text, "length": p.length} for p in self.parts],
                "requests": self.requests,
            }
        if self.files:
            base["files"] = self.files
        return base


def preview_occurrence(project: Project, campaign_id: str, now: dt.datetime) -> list[Occurrence]:
    """The next occurrence of each step of the campaign, or its last one if all are past."""
    config = project.config
    campaign = calendar.find_campaign(config, campaign_id)
    found: dict[str, Occurrence] = {}
    for occ in calendar.next_occurrences(config, now):
        if occ.campaign_id == campaign_id and occ.step_id not in found:
            found[occ.step_id] = occ
    if len(found) < len(campaign.steps):
        # A one-off in the past, or a campaign past its last_year: show its last occurrence.
        past = calendar.expand(
            config, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), now, campaigns=[campaign_id]
        )
        for occ in reversed(past):
            found.setdefault(occ.step_id, occ)
    return sorted(found.values(), key=lambda o: (o.instant, o.id))


def build_preview(
    project: Project,
    campaign_id: str,
    *,
    step: str | None = None,
    channel: str | None = None,
    language: str | None = None,
    out: Path | None = None,
    now: dt.datetime | None = None,
) -> list[PreviewItem]:
    config = project.config
    now = now or dt.datetime.now(dt.UTC)
    occurrences = preview_occurrence(project, campaign_id, now)
    campaign = config.campaigns[campaign_id]
    if step is not None and step not in campaign.steps:
        raise UnknownCampaignError(
            f"campaign {campaign_id!r} has no step {step!r}; "
            + (did_you_mean(step, list(campaign.steps)) or f"steps: {', '.join(campaign.steps)}")
        )
    if channel is not None and channel not in config.channels:
        raise UnknownCampaignError(
            f"unknown channel {channel!r}; "
            + (
                did_you_mean(channel, list(config.channels))
                or f"channels: {', '.join(config.channels)}"
            )
        )
    languages = config.campaign_languages(campaign)
    if language is not None and language not in languages:
        raise UnknownCampaignError(
            f"campaign {campaign_id!r} is not written in {language!r}; languages: "
            f"{', '.join(languages)}"
        )
    renderer = Renderer(project)
    items: list[PreviewItem] = []
    for occ in occurrences:
        if step is not None and occ.step_id != step:
            continue
        for ch_name in occ.channels:
            if channel is not None and ch_name != channel:
                continue
            ch_config = config.channels[ch_name]
            cls = get_channel_class(ch_config.type)
            if cls.kind == "email":
                for lang in [language] if language else languages:
                    items.append(_email_item(project, renderer, occ, ch_name, lang, out))
            else:
                post_lang = renderer.post_language(campaign, ch_name)
                if language is not None and post_lang != language:
                    continue
                items.append(_post_item(project, renderer, occ, ch_name, out))
    return items


def _email_item(
    project: Project, renderer: Renderer, occ: Occurrence, ch_name: str, lang: str, out: Path | None
) -> PreviewItem:
    config = project.config
    campaign = config.campaigns[occ.campaign_id]
    recipient = Recipient(
        email=SAMPLE_RECIPIENT.email,
        name=PREVIEW_RECIPIENT_NAMES.get(lang, "Ana"),
        language=lang,
        subscriber_id=0,
    )
    rendered = renderer.email(occ, recipient)
    sender = sender_for(config, campaign, email_settings(config, ch_name))
    list_name = campaign.audience[0] if campaign.audience else "list"
    msg = build_email(
        rendered=rendered,
        sender=sender,
        recipient=recipient,
        delivery_key=f"{occ.id}/{ch_name}/preview-{lang}",
        list_name=list_name,
        unsubscribe_mailto=config.organization.unsubscribe_mailto,
        date=occ.instant,
    )
    item = PreviewItem(
        occurrence=occ,
        channel=ch_name,
        type=config.channels[ch_name].type,
        kind="email",
        language=rendered.language,
        email_headers={k: str(v) for k, v in msg.items()},
        email_text=rendered.text,
        email_html=rendered.html,
    )
    if out is not None:
        folder = out / occ.campaign_id / occ.step_id
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{ch_name}.{rendered.language}"
        for suffix, data in (
            (".html", rendered.html.encode()),
            (".txt", rendered.text.encode()),
            (".eml", msg.as_bytes()),
        ):
            path = stem.with_suffix(stem.suffix + suffix)
            path.write_bytes(data)
            item.files.append(str(path))
    return item


def _post_item(
    project: Project, renderer: Renderer, occ: Occurrence, ch_name: str, out: Path | None
) -> PreviewItem:
    config = project.config
    ch_config = config.channels[ch_name]
    channel = get_channel_class(ch_config.type).from_config(ch_name, ch_config)
    rendered = renderer.post(occ, ch_name)
    parts = channel.split(rendered.text)
    requests = channel.requests(
        Post(
            key=delivery_key(occ.id, ch_name),
            language=rendered.language,
            parts=tuple(parts),
            at=occ.instant,
            metadata=metadata_for(occ, ch_name),
        )
    )
    item = PreviewItem(
        occurrence=occ,
        channel=ch_name,
        type=ch_config.type,
        language=rendered.language,
        limit=channel.max_length,
        text=rendered.text,
        parts=[PostPart(p, channel.count(p)) for p in parts],
        requests=[r.as_dict() for r in requests],
    )
    if out is not None:
        folder = out / occ.campaign_id / occ.step_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ch_name}.{rendered.language}.txt"
        path.write_text("\n\n---\n\n".join(parts) + "\n", encoding="utf-8")
        item.files.append(str(path))
    return item
