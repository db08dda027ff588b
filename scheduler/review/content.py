"""Everything an occurrence will send, as one text, and its fingerprint.

The text holds each language's rendered subject, text and HTML, each post's parts as the
platform will get them, the images of each (a hash of the file and the alt text in that
language), the channels, the audience lists and the sender: any edit of a
statement, a template or campaigns.yaml that changes what goes out changes the fingerprint,
and so voids an approval. Per-recipient links are left as placeholders: they differ for
every subscriber and are not the content anyone approves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scheduler.calendar import Occurrence
from scheduler.channels import get_channel_class
from scheduler.config.project import Project
from scheduler.content.render import Recipient, Renderer

LINKS = ("{unsubscribe_url}", "{preferences_url}")


@dataclass(frozen=True, slots=True)
class Content:
    text: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def render_content(project: Project, occ: Occurrence, renderer: Renderer | None = None) -> Content:
    """Raises TemplateError / StatementError when the occurrence cannot be rendered."""
    config = project.config
    renderer = renderer or Renderer(project)
    campaign = config.campaigns[occ.campaign_id]
    lines = [
        f"occurrence: {occ.id}",
        f"channels: {', '.join(occ.channels)}",
        f"audience: {', '.join(campaign.audience) or '-'}",
    ]
    for name in occ.channels:
        channel_config = config.channels[name]
        cls = get_channel_class(channel_config.type)
        if cls.kind == "email":
            settings = dict(channel_config.model_extra or {})
            sender_id = str(campaign.sender or settings.get("sender") or next(iter(config.senders)))
            sender = config.senders[sender_id]
            lines.append(
                f"sender of {name}: {sender.name} <{sender.address}>"
                + (f" reply-to {sender.reply_to}" if sender.reply_to else "")
            )
            for language in config.campaign_languages(campaign):
                recipient = Recipient(
                    email="subscriber@example.org", name="Ana", language=language, subscriber_id=0
                )
                email = renderer.email(occ, recipient, links=LINKS)
                lines += [
                    "",
                    f"=== {name} email [{email.language}]",
                    f"Subject: {email.subject}",
                    "--- text",
                    email.text.rstrip("\n"),
                    "--- html",
                    email.html.rstrip("\n"),
                    *_media(renderer, occ, email.language),
                ]
        else:
            post = renderer.post(occ, name)
            channel = cls.from_config(name, channel_config)
            lines += ["", f"=== {name} {channel_config.type} post [{post.language}]"]
            for n, part in enumerate(channel.split(post.text), start=1):
                lines += [f"--- part {n}", part]
            lines += _media(renderer, occ, post.language)
    return Content("\n".join(lines) + "\n")


def _media(renderer: Renderer, occ: Occurrence, language: str) -> list[str]:
    """The images sent with the occurrence in `language`: the file's content hash (a new
    picture under the same name is a change) and its alt text."""
    lines: list[str] = []
    for image in renderer.images(occ, language):
        digest = hashlib.sha256(image.path.read_bytes()).hexdigest()
        lines += [f"--- image {image.file} sha256:{digest}", f"alt: {image.alt}"]
    return lines
