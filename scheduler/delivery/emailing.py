"""Compose one occurrence's email for many recipients, rendering each language only once.

The templates are rendered once per (language, has a name) with placeholder tokens where
the recipient's name, address and signed links go; `MessageFactory` then fills them in per
recipient. Before a variant is trusted, its first message is compared with the message the
plain path (render for that recipient, then `build_email`) makes; if a template does
something the tokens cannot follow (say `recipient.name | upper`, or the name in the subject),
that variant falls back to the plain path, which is slower but always right.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
from dataclasses import dataclass

from scheduler.calendar import Occurrence
from scheduler.channels.smtp import SmtpChannel
from scheduler.config.model import Campaign, Config, Sender
from scheduler.content.message import build_email, domain_of, list_id_for, message_id_for
from scheduler.content.render import Recipient, Renderer
from scheduler.listhealth import verp
from scheduler.mail.compose import MessageFactory
from scheduler.tokens import secret_key

log = logging.getLogger(__name__)

# Plain ASCII letters and digits: they survive autoescaping and CSS inlining unchanged.
NAME = "ZZrcptNAMEzz5b1e"
EMAIL = "ZZrcptEMAILzz9d4c"
UNSUBSCRIBE = "ZZrcptUNSUBzz8c2d"
PREFERENCES = "ZZrcptPREFSzz3a7f"
TOKENS = (NAME, EMAIL, UNSUBSCRIBE, PREFERENCES)


def email_settings(config: Config, channel: str) -> SmtpChannel:
    """The email channel `channel` as configured (nothing is opened until it sends)."""
    return SmtpChannel.from_config(channel, config.channels[channel])


def sender_for(config: Config, campaign: Campaign | None, channel: SmtpChannel) -> Sender:
    """Who the mail comes from: the campaign's sender, else its chapter's, else the
    channel's (`Config.sender_of`)."""
    return config.sender_of(campaign, channel.sender)


@dataclass
class _Variant:
    factory: MessageFactory | None  # None: use the plain path
    verified: bool = False


class EmailComposer:
    """Messages of one occurrence on one email channel."""

    def __init__(
        self, renderer: Renderer, occ: Occurrence, channel: str, *, date: dt.datetime | None = None
    ) -> None:
        self.renderer = renderer
        self.occ = occ
        self.channel = channel
        config = renderer.config
        self.campaign = config.campaigns[occ.campaign_id]
        settings = email_settings(config, channel)
        self.sender: Sender = sender_for(config, self.campaign, settings)
        self.list_name = ",".join(self.campaign.audience) or "list"
        domain = domain_of(self.sender.address)
        self.first_list = self.campaign.audience[0] if self.campaign.audience else "list"
        self.custom_list_id = settings.list_id
        self.list_id = self.custom_list_id or list_id_for(self.first_list, domain)
        self.return_path = settings.settings.return_path  # VERP base address, if any
        self.domain = domain
        self.unsubscribe_mailto = config.campaign_voice(self.campaign).unsubscribe_mailto
        # None: every message carries the time it is composed, i.e. really sent (a retry in
        # the same batch resends the same bytes). A fixed date is for previews and tests.
        self.fixed_date = date
        self._variants: dict[tuple[str, bool], _Variant] = {}
        # Looked up once, not per message (a Voice is built on each look-up).
        # The signed links of every recipient (Renderer.recipient_links, made faster).
        self._links = renderer.links_for(
            self.campaign, self.list_name, occ.id, renderer.link_base(self.campaign), secret_key()
        )
        self._languages: dict[str | None, str] = {}  # the subscriber's -> the email's
        self.fallbacks = 0

    def delivery_key(self, subscriber_id: int) -> str:
        return f"{self.occ.id}/{self.channel}/{subscriber_id}"

    def envelope_from(self, delivery_id: int) -> str:
        """MAIL FROM of one delivery: its VERP address, or the sender's without a return path."""
        if self.return_path is None:
            return self.sender.address
        return verp.return_path(delivery_id, self.return_path)

    def message_id(self, subscriber_id: int) -> str:
        return message_id_for(self.delivery_key(subscriber_id), self.domain)

    def compose(
        self, *, subscriber_id: int, email_address: str, name: str | None, language: str | None
    ) -> bytes:
        return self.compose_for_wire(
            subscriber_id=subscriber_id, email_address=email_address, name=name, language=language
        )[0]

    def compose_for_wire(
        self, *, subscriber_id: int, email_address: str, name: str | None, language: str | None
    ) -> tuple[bytes, bool]:
        """The message, and whether it is wire-ready (`Outgoing.wire`): true for the fast
        path's output, which is CRLF throughout with no line starting with a dot."""
        date = self.date
        if not email_address.isascii():
            # A non-ASCII part before '@' (the domain is IDNA by now): an RFC 6532 message
            # with UTF-8 headers, for a server that offers SMTPUTF8. Rare: the plain path.
            return self._plain(
                self._recipient(subscriber_id, email_address, name, language), date, utf8=True
            ), False
        lang = self._languages.get(language)
        if lang is None:
            lang = self._languages[language] = self.renderer.email_language(self.campaign, language)
        key = (lang, bool(name and name.strip()))
        variant = self._variants.get(key)
        if variant is None:
            variant = self._variants[key] = _Variant(self._factory(lang, key[1]))
        if variant.factory is None:
            return self._plain(
                self._recipient(subscriber_id, email_address, name, language), date
            ), False
        unsubscribe_url, preferences_url = self._links(subscriber_id, email_address)
        data = variant.factory.build(
            to_email=email_address,
            to_name=name,
            message_id=self.message_id(subscriber_id),
            unsubscribe_url=unsubscribe_url,
            values={
                NAME: name or "",
                EMAIL: email_address,
                UNSUBSCRIBE: unsubscribe_url,
                PREFERENCES: preferences_url,
            },
            date=date,
        )
        if not variant.verified:
            plain = self._plain(self._recipient(subscriber_id, email_address, name, language), date)
            if _same_message(data, plain):
                variant.verified = True
            else:
                log.warning(
                    "template of %s (%s) personalizes beyond placeholders; composing "
                    "each message in full for this variant",
                    self.occ.id,
                    lang,
                )
                variant.factory = None
                self.fallbacks += 1
                return plain, False
        return data, True

    def _recipient(
        self, subscriber_id: int, email_address: str, name: str | None, language: str | None
    ) -> Recipient:
        return Recipient(
            email=email_address,
            name=name,
            language=language or "",
            subscriber_id=subscriber_id,
            list_name=self.list_name,
        )

    def _factory(self, language: str, has_name: bool) -> MessageFactory | None:
        placeholder = Recipient(
            email=EMAIL,
            name=NAME if has_name else None,
            language=language,
            subscriber_id=0,
            list_name=self.list_name,
        )
        rendered = self.renderer.email(
            self.occ, placeholder, links=(UNSUBSCRIBE, PREFERENCES), channel=self.channel
        )
        if any(token in rendered.subject for token in TOKENS):
            return None  # a personalized subject: every message is composed in full
        return MessageFactory(
            sender=self.sender,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            language=rendered.language,
            list_id=self.list_id,
            unsubscribe_mailto=self.unsubscribe_mailto,
            date=self.date,
            tokens=TOKENS,
        )

    @property
    def date(self) -> dt.datetime:
        return self.fixed_date or dt.datetime.now(dt.UTC)

    def _plain(
        self, recipient: Recipient, date: dt.datetime | None = None, *, utf8: bool = False
    ) -> bytes:
        rendered = self.renderer.email(self.occ, recipient, channel=self.channel)
        msg = build_email(
            rendered=rendered,
            sender=self.sender,
            recipient=recipient,
            delivery_key=self.delivery_key(recipient.subscriber_id or 0),
            list_name=self.first_list,
            unsubscribe_mailto=self.unsubscribe_mailto,
            date=date or self.date,
        )
        if self.custom_list_id:
            msg.replace_header("List-Id", self.custom_list_id)
        if utf8:
            return msg.as_bytes(policy=email.policy.SMTPUTF8.clone(max_line_length=998))
        return msg.as_bytes()


def _same_message(fast: bytes, plain: bytes) -> bool:
    """Same headers that matter and the same decoded text and HTML."""
    a = email.message_from_bytes(fast, policy=email.policy.default)
    b = email.message_from_bytes(plain, policy=email.policy.default)
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe", "List-Id"):
        if str(a.get(header, "")) != str(b.get(header, "")):
            return False
    for kind in ("plain", "html"):
        pa, pb = a.get_body((kind,)), b.get_body((kind,))
        if pa is None or pb is None or pa.get_content() != pb.get_content():
            return False
    return True
