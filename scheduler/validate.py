"""Everything a user typed is checked before anything is sent (docs/ARCHITECTURE.md, rule 4).

`validate_project` reads campaigns.yaml, then checks what only the whole project can tell:
steps naming unknown channels, lists or templates; statements missing in a language; templates
that fail to compile or to render with a sample context; secrets written literally; CSV lists
with bad rows. It returns every problem at once.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from scheduler import settings
from scheduler.audience.csvfile import read_csv
from scheduler.calendar import Occurrence
from scheduler.channels import CHANNEL_CLASSES, ProjectFacts, get_channel_class, sends_email
from scheduler.config import secrets
from scheduler.config.diagnostics import did_you_mean, schema_diagnostics
from scheduler.config.project import Project, load_project_partially
from scheduler.content.render import SAMPLE_RECIPIENT, Recipient, Renderer
from scheduler.content.templates import Templates
from scheduler.errors import ConfigError, Diagnostic, TemplateError
from scheduler.tokens import SECRET_ENV

# Settings whose names say they hold a secret, whatever the channel type declares.
_SECRET_NAME = re.compile(r"(token|password|secret|api_key|apikey|webhook_url)$", re.I)


@dataclass
class Report:
    project: Project | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_project(config_option: str | Path | None = None, *, strict: bool = False) -> Report:
    try:
        project, problems = load_project_partially(config_option)
    except ConfigError as e:
        return Report(None, list(e.diagnostics))
    if project is None:
        return Report(None, problems)
    checker = _Checker(project, strict=strict)
    checker.run()
    report = Report(project, problems + checker.diagnostics)
    report.diagnostics.sort(key=lambda d: (d.file != project.display, d.file, d.line, d.column))
    if problems:
        report.project = None  # a project with entries set aside must not be used to send
    return report


def require_valid(config_option: str | Path | None = None) -> Project:
    """Load and fully validate, raising ConfigError listing every problem (for send/preview)."""
    report = validate_project(config_option)
    if not report.ok or report.project is None:
        raise ConfigError(report.errors)
    return report.project


class _Checker:
    def __init__(self, project: Project, *, strict: bool) -> None:
        self.project = project
        self.config = project.config
        self.doc = project.document
        self.strict = strict
        self.diagnostics: list[Diagnostic] = []
        self.renderer = Renderer(project)
        # (campaign, step, channel) whose template is missing: reported once, not rendered.
        self.unrenderable: set[tuple[str, str, str]] = set()

    def known(self, section: str, name: str) -> bool:
        """Defined, or defined but set aside for its own schema errors (already reported)."""
        entries = getattr(self.config, section)
        return name in entries or (section, name) in self.project.set_aside

    def error(
        self,
        loc: tuple[str | int, ...],
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: str = "error",
    ) -> None:
        line, col = self.doc.key_position(loc) if key else self.doc.position(loc)
        self.diagnostics.append(Diagnostic(self.doc.path, line, col, message, hint, severity))

    def run(self) -> None:
        self.check_channels()
        self.check_senders()
        self.check_lists()
        templates_ok = self.check_templates_compile()
        statements_ok = self.check_campaigns()
        if templates_ok and statements_ok:
            self.check_rendering()
        if self.strict and not settings.SECRET_KEY.is_set():
            self.diagnostics.append(
                Diagnostic(
                    self.doc.path,
                    0,
                    0,
                    f"{SECRET_ENV} is not set: unsubscribe links would be signed with "
                    "the development key",
                    f"export {SECRET_ENV}=$(python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')",
                )
            )

    # --- channels -------------------------------------------------------------------------

    def check_channels(self) -> None:
        for name, channel in self.config.channels.items():
            cls = get_channel_class(channel.type)
            settings = dict(channel.model_extra or {})
            try:
                cls.Settings.model_validate(settings)
            except ValidationError as e:
                self.diagnostics.extend(
                    schema_diagnostics(self.doc, e, cls.Settings, prefix=("channels", name))
                )
            for key, value in settings.items():
                if not isinstance(value, str):
                    continue
                secretish = key in cls.secret_fields or _SECRET_NAME.search(key)
                if secretish and not secrets.is_reference(value):
                    if key in cls.secret_fields:
                        continue  # the channel's own Settings model already said so
                    self.error(
                        ("channels", name, key),
                        f"channels.{name}.{key} holds a secret written literally",
                        f"write it as ${{{_env_name(name, key)}}} and export that variable; "
                        "campaigns.yaml is kept in git",
                    )
                if self.strict:
                    for var in secrets.missing(value):
                        self.error(
                            ("channels", name, key),
                            f"environment variable {var} is not set (channels.{name}.{key})",
                            f"export {var}=... before running, or give a default: "
                            f"${{{var}:-value}}",
                        )
            try:
                valid = cls.Settings.model_validate(settings)
            except ValidationError:
                continue  # reported above
            facts = ProjectFacts(
                base_dir=self.project.base_dir, senders=frozenset(self.config.senders)
            )
            for problem in cls.project_problems(valid, facts):
                self.error(("channels", name, problem.key), problem.message, problem.hint)

    def check_senders(self) -> None:
        email_channels = [c for c in self.config.channels.values() if sends_email(c)]
        if email_channels and not self.config.senders:
            self.error(
                ("channels",), "email channels need a sender", "add a senders: section", key=True
            )

    # --- lists ----------------------------------------------------------------------------

    def check_lists(self) -> None:
        org = self.config.organization
        for name, mlist in self.config.lists.items():
            if mlist.source is None:
                continue
            path = self.project.base_dir / mlist.source
            if not path.is_file():
                self.error(
                    ("lists", name, "source"),
                    f"list file {mlist.source!r} not found",
                    "the path is relative to campaigns.yaml; create the CSV or fix the path",
                )
                continue
            result = read_csv(path, languages=org.languages, default_language=org.default_language)
            shown = self.project.relative(path)
            for problem in result.problems:
                self.diagnostics.append(
                    Diagnostic(shown, problem.row, 0, problem.reason, problem.hint)
                )

    # --- campaigns ------------------------------------------------------------------------

    def check_campaigns(self) -> bool:
        statements_ok = True
        known_templates = self._template_names()
        for cid, campaign in self.config.campaigns.items():
            base = ("campaigns", cid)
            for i, list_name in enumerate(campaign.audience):
                if not self.known("lists", list_name):
                    self.error(
                        (*base, "audience", i),
                        f"unknown list {list_name!r}",
                        did_you_mean(list_name, list(self.config.lists))
                        or "define it under lists:",
                    )
            if campaign.sender and not self.known("senders", campaign.sender):
                self.error(
                    (*base, "sender"),
                    f"unknown sender {campaign.sender!r}",
                    did_you_mean(campaign.sender, list(self.config.senders)),
                )
            for lang_i, lang in enumerate(campaign.languages or []):
                if lang not in self.config.organization.languages:
                    self.error(
                        (*base, "languages", lang_i),
                        f"language {lang!r} is not offered by the organization",
                        "add it to organization.languages",
                    )
            for sid, step in campaign.steps.items():
                sloc = (*base, "steps", sid)
                for i, ch in enumerate(step.channels):
                    if not self.known("channels", ch):
                        self.error(
                            (*sloc, "channels", i),
                            f"unknown channel {ch!r}",
                            did_you_mean(ch, list(self.config.channels))
                            or "define it under channels:",
                        )
                    if ch not in self.config.channels:
                        continue
                    kind = get_channel_class(self.config.channels[ch].type).kind
                    if kind == "email" and not campaign.audience:
                        self.error(
                            (*sloc, "channels", i),
                            f"step sends email through {ch!r} but the campaign has no audience",
                            f"add 'audience: [{next(iter(self.config.lists), 'LIST')}]' "
                            "to the campaign",
                        )
                    if not self._has_template(step.template, ch, known_templates):
                        self.unrenderable.add((cid, sid, ch))
                        wanted = (
                            f"email/{step.template}.html and email/{step.template}.txt"
                            if kind == "email"
                            else f"post/{step.template}.txt"
                        )
                        self.error(
                            (*sloc, "template"),
                            f"no template for {step.template!r} on channel {ch!r}",
                            f"create {self.project.relative(self.project.templates_dir)}/{wanted}",
                        )
            for lang in self.config.campaign_languages(campaign):
                try:
                    self.renderer.statement(campaign.statement, lang)
                except ConfigError as e:
                    statements_ok = False
                    for d in e.diagnostics:
                        if d.message == "statement file not found":
                            self.error(
                                (*base, "statement"),
                                f"statement {campaign.statement!r} has no {lang!r} "
                                f"version ({d.file} not found)",
                                d.hint,
                            )
                        else:
                            self.diagnostics.append(d)
        return statements_ok

    def _template_names(self) -> set[str]:
        return set(self.renderer.templates.all_files())

    def _has_template(self, template: str, channel: str, known: set[str]) -> bool:
        ch = self.config.channels[channel]
        langs = self.config.organization.languages
        if get_channel_class(ch.type).kind == "email":
            return all(
                any(
                    c in known
                    for lang in langs
                    for c in Templates.email_candidates(template, part, lang)
                )
                for part in ("html", "txt")
            )
        return any(
            c in known for lang in langs for c in Templates.post_candidates(template, ch.type, lang)
        )

    # --- templates ------------------------------------------------------------------------

    def check_templates_compile(self) -> bool:
        templates = self.renderer.templates
        if not templates.directory.is_dir():
            self.diagnostics.append(
                Diagnostic(
                    self.project.relative(templates.directory),
                    0,
                    0,
                    "templates folder not found",
                    "create it, or set settings.templates_dir in campaigns.yaml",
                )
            )
            return False
        ok = True
        for name in templates.all_files():
            try:
                templates.compile(name)
            except TemplateError as e:
                ok = False
                self.diagnostics.append(_template_diagnostic(self.project, str(e)))
        return ok

    def check_rendering(self) -> None:
        """Render every step on every channel in every language with a sample context."""
        seen: set[str] = set()
        for cid, campaign in self.config.campaigns.items():
            zone = self.config.campaign_zone(campaign)
            for sid, step in campaign.steps.items():
                occ = sample_occurrence(cid, sid, campaign.time, zone, step.channels, step.template)
                for ch in step.channels:
                    if ch not in self.config.channels or (cid, sid, ch) in self.unrenderable:
                        continue
                    kind = get_channel_class(self.config.channels[ch].type).kind
                    for lang in self.config.campaign_languages(campaign):
                        try:
                            if kind == "email":
                                self.renderer.email(occ, _sample_recipient(lang))
                            else:
                                post = self.renderer.post(occ, ch)
                                if step.overflow == "error":
                                    self.check_overflow(cid, sid, ch, post.text)
                        except (TemplateError, ConfigError) as e:
                            d = _template_diagnostic(self.project, str(e).split("\n")[0])
                            if d.format() not in seen:
                                seen.add(d.format())
                                self.diagnostics.append(d)
                        if kind != "email":
                            break  # a post is rendered in its channel's one language

    def check_overflow(self, cid: str, sid: str, ch: str, text: str) -> None:
        """A step with `overflow: error` must fit its channels in one post."""
        try:
            channel = get_channel_class(self.config.channels[ch].type).from_config(
                ch, self.config.channels[ch]
            )
        except (ValidationError, ValueError):
            return  # reported by check_channels
        if channel.fits(text):
            return
        self.error(
            ("campaigns", cid, "steps", sid, "template"),
            f"the post for channel {ch!r} is {channel.count(text)} characters, over "
            f"{channel.type}'s limit of {channel.limit}, and the step sets overflow: error",
            "shorten the post template, or set 'overflow: thread' to post it as a thread",
        )


def _sample_recipient(language: str) -> Recipient:
    return Recipient(
        email=SAMPLE_RECIPIENT.email, name=SAMPLE_RECIPIENT.name, language=language, subscriber_id=0
    )


def sample_occurrence(
    campaign_id: str,
    step_id: str,
    time: dt.time,
    zone: ZoneInfo,
    channels: list[str],
    template: str,
) -> Occurrence:
    anchor = dt.date(2030, 5, 1)
    local = dt.datetime.combine(anchor, time, tzinfo=zone)
    return Occurrence(
        id=f"{campaign_id}/{anchor.year}/{step_id}",
        campaign_id=campaign_id,
        step_id=step_id,
        anchor=anchor,
        local=local,
        instant=local.astimezone(dt.UTC),
        timezone=zone.key,
        channels=tuple(channels),
        template=template,
    )


_WHERE = re.compile(r"^(?P<file>[^\s:][^:]*?):(?P<line>\d+): (?P<msg>.*)$")


def _template_diagnostic(project: Project, text: str) -> Diagnostic:
    m = _WHERE.match(text)
    if m:
        msg = m["msg"]
        hint = None
        if "; variables available:" in msg:
            msg, available = msg.split("; variables available:", 1)
            hint = "variables available:" + available
        return Diagnostic(project.relative(Path(m["file"])), int(m["line"]), 0, msg, hint)
    return Diagnostic(project.relative(project.templates_dir), 0, 0, text)


def _env_name(channel: str, key: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{channel}_{key}".upper())


__all__ = ["CHANNEL_CLASSES", "Report", "require_valid", "sample_occurrence", "validate_project"]
