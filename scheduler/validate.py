"""Everything a user typed is checked before anything is sent (docs/ARCHITECTURE.md, rule 4).

`validate_project` reads campaigns.yaml, then checks what only the whole project can tell:
steps naming unknown channels, lists or templates; statements missing in a language; templates
that fail to compile or to render with a sample context; secrets written literally; CSV lists
with bad rows. It returns every problem at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from scheduler import settings
from scheduler.audience.csvfile import read_csv
from scheduler.calendar import Occurrence
from scheduler.channels import (
    CHANNEL_CLASSES,
    ProjectFacts,
    from_config,
    get_channel_class,
    sends_email,
)
from scheduler.config import secrets
from scheduler.config.diagnostics import did_you_mean, schema_diagnostics
from scheduler.config.model import RESERVED_CHAPTER_IDS, StepImage
from scheduler.config.project import Project, load_project_partially
from scheduler.content.images import inspect
from scheduler.content.render import SAMPLE_RECIPIENT, Recipient, Renderer
from scheduler.content.templates import Templates
from scheduler.errors import ConfigError, Diagnostic, TemplateError
from scheduler.tokens import SECRET_ENV

# Settings whose names say they hold a secret, whatever the channel type declares.
_SECRET_NAME = re.compile(r"(token|password|secret|api_key|apikey|webhook_url)$", re.I)


@dataclass
class Report:
    """Every problem found, and the project to send from when the file as a whole is sound.

    Warnings (bad rows in a list) stop nothing. An error of one campaign blocks that
    campaign (`Project.blocked`); only an error in a shared structure (YAML syntax,
    `organization`, a channel, a sender) leaves `project` None.
    """

    project: Project | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Each blocked campaign with its own problems (a shared template's appear under each).
    blocked: dict[str, list[Diagnostic]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def fatal(self) -> list[Diagnostic]:
        """The errors that stop every campaign."""
        return [d for d in self.errors if d.scope == "file"]

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
    diagnostics = problems + checker.diagnostics
    if strict:
        diagnostics = [
            dataclasses.replace(d, severity="error") if d.severity == "warning" else d
            for d in diagnostics
        ]
    blocked: dict[str, list[Diagnostic]] = {}
    unique: dict[str, Diagnostic] = {}
    for d in diagnostics:
        if d.severity == "error" and d.scope == "campaign" and d.campaign is not None:
            blocked.setdefault(d.campaign, []).append(d)
        # Said once: a template that fails for two campaigns, or fails to compile and so to
        # render, is one problem to fix.
        kept = unique.setdefault(d.format(), d)
        if kept.scope == "template" and d.scope == "campaign":
            unique[d.format()] = d
    report = Report(project, list(unique.values()), blocked)
    report.diagnostics.sort(key=lambda d: (d.file != project.display, d.file, d.line, d.column))
    if report.fatal:
        report.project = None  # a shared structure is broken: nothing may be sent from it
    else:
        frozen = {cid: tuple(ds) for cid, ds in blocked.items()}
        report.project = dataclasses.replace(project, blocked=frozen)
    return report


def require_valid(config_option: str | Path | None = None) -> Project:
    """Load and validate; raise ConfigError listing the problems that stop every campaign.

    The project returned may have blocked campaigns (`Project.blocked`): callers that send
    one campaign check it.
    """
    report = validate_project(config_option)
    if report.project is None:
        raise ConfigError(report.fatal or report.errors)
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
        self.no_statement: set[str] = set()  # campaigns with a statement missing or broken

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
        scope, campaign = "file", None
        if len(loc) >= 2 and loc[0] == "campaigns":
            scope, campaign = "campaign", str(loc[1])
        self.diagnostics.append(
            Diagnostic(self.doc.path, line, col, message, hint, severity, scope, campaign)
        )

    def block(self, campaign: str, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(
            dataclasses.replace(diagnostic, scope="campaign", campaign=campaign)
        )

    def campaign_loc(self, campaign_id: str) -> tuple[str, ...]:
        """Where a campaign is written: `campaigns.X`, or `chapters.C.campaigns.X`."""
        if "/" in campaign_id:
            chapter, name = campaign_id.split("/", 1)
            return ("chapters", chapter, "campaigns", name)
        return ("campaigns", campaign_id)

    def run(self) -> None:
        self.check_chapters()
        self.check_channels()
        self.check_alert_channel()
        self.check_senders()
        self.check_lists()
        # A broken template or statement blocks the campaigns that use it, found by
        # rendering each campaign; the others are still checked and sent.
        templates_ok = self.check_templates_compile()
        self.check_campaigns()
        self.check_images()
        if templates_ok:
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

    # --- chapters -------------------------------------------------------------------------

    def check_chapters(self) -> None:
        chapters = self.config.chapters
        for chapter_id, chapter in chapters.items():
            loc = ("chapters", chapter_id)
            if chapter_id in RESERVED_CHAPTER_IDS:
                self.error(
                    loc,
                    f"{chapter_id!r} cannot name a chapter: it is the name of a web page or "
                    "a templates folder",
                    "rename the chapter, e.g. after its country ('usa', 'philippines')",
                    key=True,
                )
            if chapter.sender and not self.known("senders", chapter.sender):
                self.error(
                    (*loc, "sender"),
                    f"unknown sender {chapter.sender!r}",
                    did_you_mean(chapter.sender, list(self.config.senders))
                    or "define it under senders:",
                )
            for campaign_id, campaign in chapter.campaigns.items():
                if campaign.joins is None:
                    continue
                if ("campaigns", campaign.joins) in self.project.set_aside:
                    continue  # the joined campaign has errors of its own, reported there
                joined = self.config.campaigns.get(campaign.joins)
                if joined is None or joined.chapter is not None:
                    alliance = [c for c, v in self.config.campaigns.items() if v.chapter is None]
                    self.error(
                        (*loc, "campaigns", campaign_id, "joins"),
                        f"{campaign.joins!r} is not a campaign of the alliance",
                        did_you_mean(campaign.joins, alliance)
                        or f"a chapter joins one of: {', '.join(alliance) or 'none'}",
                    )
        for i, chapter_id in enumerate(self.config.organization.archive_chapters):
            if chapter_id not in chapters:
                self.error(
                    ("organization", "archive_chapters", i),
                    f"unknown chapter {chapter_id!r}",
                    did_you_mean(chapter_id, list(chapters)) or "define it under chapters:",
                )
        for section in ("lists", "channels"):
            for name, entry in getattr(self.config, section).items():
                owner = entry.chapter
                if owner is not None and owner not in chapters:
                    self.error(
                        (section, name, "chapter"),
                        f"unknown chapter {owner!r}",
                        did_you_mean(owner, list(chapters)) or "define it under chapters:",
                    )
                if owner is not None and entry.shared:
                    self.error(
                        (section, name, "shared"),
                        f"{section}.{name} belongs to chapter {owner!r}: only the alliance's "
                        f"{section} can be shared",
                        "remove 'shared: true', or move the entry to the alliance",
                    )

    def check_owner(
        self, loc: tuple[str | int, ...], section: str, name: str, chapter: str | None
    ) -> None:
        """The rule: an alliance campaign uses the alliance's lists and channels; a chapter's
        campaign uses its own, and the alliance's that say `shared: true`."""
        entry = getattr(self.config, section).get(name)
        if entry is None or entry.chapter == chapter:
            return
        kind = section.removesuffix("s")
        if chapter is None:
            self.error(
                loc,
                f"the alliance's campaign uses {kind} {name!r} of chapter {entry.chapter!r}",
                f"a chapter's {section} are its own; join the day from chapters.{entry.chapter} "
                "instead, or use an alliance " + kind,
            )
        elif entry.chapter is not None:
            self.error(
                loc,
                f"chapter {chapter!r} uses {kind} {name!r} of chapter {entry.chapter!r}",
                f"give {chapter!r} its own {kind} (with 'chapter: {chapter}')",
            )
        elif not entry.shared:
            self.error(
                loc,
                f"chapter {chapter!r} uses the alliance's {kind} {name!r}, which is not shared",
                f"set 'shared: true' on {section}.{name} if the alliance allows it, or give "
                f"the chapter its own {kind}",
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
            problems = cls.project_problems(valid, facts)
            if self.strict:
                # Only --strict asks the platforms (a token about to expire).
                live = from_config(name, channel)
                try:
                    problems += live.strict_problems()
                finally:
                    live.close()
            for problem in problems:
                self.error(
                    ("channels", name, problem.key),
                    problem.message,
                    problem.hint,
                    severity=problem.severity,
                )

    def check_senders(self) -> None:
        email_channels = [c for c in self.config.channels.values() if sends_email(c)]
        if email_channels and not self.config.senders:
            self.error(
                ("channels",), "email channels need a sender", "add a senders: section", key=True
            )

    # --- lists ----------------------------------------------------------------------------

    def check_lists(self) -> None:
        for name, mlist in self.config.lists.items():
            voice = self.config.list_voice(name)
            if mlist.source is None:
                continue
            path = self.project.base_dir / mlist.source
            if not path.is_file():
                line, col = self.doc.position(("lists", name, "source"))
                missing = Diagnostic(
                    self.doc.path,
                    line,
                    col,
                    f"list file {mlist.source!r} not found",
                    "the path is relative to campaigns.yaml; create the CSV or fix the path",
                    scope="list",
                )
                users = [c for c, camp in self.config.campaigns.items() if name in camp.audience]
                for cid in users:
                    self.block(cid, missing)
                if not users:
                    self.diagnostics.append(missing)
                continue
            try:
                result = read_csv(
                    path, languages=list(voice.languages), default_language=voice.default_language
                )
            except OSError as e:
                self.error(("lists", name, "source"), f"cannot read {mlist.source!r}: {e}")
                continue
            # Bad rows are left out and reported; the good rows are imported and sent.
            self.diagnostics.extend(result.diagnostics(self.project.relative(path)))

    def check_alert_channel(self) -> None:
        name = self.config.settings.alert_channel
        if name is None:
            return
        if not self.known("channels", name):
            self.error(
                ("settings", "alert_channel"),
                f"unknown channel {name!r}",
                did_you_mean(name, list(self.config.channels))
                or "name a post channel defined under channels:",
            )
        elif name in self.config.channels and self.config.channels[name].type == "smtp":
            self.error(
                ("settings", "alert_channel"),
                f"alert channel {name!r} is an email channel",
                "alerts go by email to the organizers' accounts anyway; name a post channel "
                "(e.g. a private Discord or Slack webhook)",
            )

    # --- campaigns ------------------------------------------------------------------------

    def check_campaigns(self) -> None:
        known_templates = self._template_names()
        for cid, campaign in self.config.campaigns.items():
            base = self.campaign_loc(cid)
            for i, list_name in enumerate(campaign.audience):
                if not self.known("lists", list_name):
                    self.error(
                        (*base, "audience", i),
                        f"unknown list {list_name!r}",
                        did_you_mean(list_name, list(self.config.lists))
                        or "define it under lists:",
                    )
                self.check_owner((*base, "audience", i), "lists", list_name, campaign.chapter)
            if campaign.sender and not self.known("senders", campaign.sender):
                self.error(
                    (*base, "sender"),
                    f"unknown sender {campaign.sender!r}",
                    did_you_mean(campaign.sender, list(self.config.senders)),
                )
            voice = self.config.campaign_voice(campaign)
            for lang_i, lang in enumerate(campaign.languages or []):
                if lang not in voice.languages:
                    where = f"chapters.{campaign.chapter}" if campaign.chapter else "organization"
                    self.error(
                        (*base, "languages", lang_i),
                        f"language {lang!r} is not offered by the "
                        + ("chapter" if campaign.chapter else "organization"),
                        f"add it to {where}.languages",
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
                    self.check_owner((*sloc, "channels", i), "channels", ch, campaign.chapter)
                    kind = get_channel_class(self.config.channels[ch].type).kind
                    if kind == "email" and not campaign.audience:
                        self.error(
                            (*sloc, "channels", i),
                            f"step sends email through {ch!r} but the campaign has no audience",
                            f"add 'audience: [{next(iter(self.config.lists), 'LIST')}]' "
                            "to the campaign",
                        )
                    if not self._has_template(step.template, ch, known_templates, campaign.chapter):
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
                    self.renderer.statement(campaign.statement, lang, campaign.chapter)
                except ConfigError as e:
                    self.no_statement.add(cid)
                    for d in e.diagnostics:
                        if d.message == "statement file not found":
                            self.error(
                                (*base, "statement"),
                                f"statement {campaign.statement!r} has no {lang!r} "
                                f"version ({d.file} not found)",
                                d.hint,
                            )
                        else:
                            self.block(cid, d)

    def check_images(self) -> None:
        """Every language names the same images (each with its alt text), and every post
        channel of every step would take them."""
        before = len(self.diagnostics)
        self._check_images()
        # A statement shared by campaigns, or two channels of one type: say it once.
        seen: set[str] = set()
        found = self.diagnostics[before:]
        del self.diagnostics[before:]
        for d in found:
            if d.format() not in seen:
                seen.add(d.format())
                self.diagnostics.append(d)

    def _check_images(self) -> None:
        for cid, campaign in self.config.campaigns.items():
            if cid in self.no_statement:
                continue  # its statement is reported (and the campaign blocked) already
            languages = self.config.campaign_languages(campaign)
            versions = {
                lang: self.renderer.statement(campaign.statement, lang, campaign.chapter)
                for lang in languages
            }
            counts = {lang: len(v.images) for lang, v in versions.items()}
            most = max(counts.values(), default=0)
            for lang, statement in versions.items():
                if counts[lang] < most:
                    other = next(lg for lg, n in counts.items() if n == most)
                    self.diagnostics.append(
                        Diagnostic(
                            statement.path,
                            1,
                            1,
                            f"the {other!r} version names {most} image(s) and this one "
                            f"{counts[lang]}: followers reading {lang!r} would get no alt text",
                            f"add the same images to the front matter with alt text in {lang}",
                        )
                    )
            for sid, step in campaign.steps.items():
                at: tuple[str | int, ...] = (*self.campaign_loc(cid), "steps", sid)
                if step.image is not None:
                    self._check_step_image((*at, "image"), step.image, step.channels, languages)
                for ch, chosen in step.images.items():
                    loc = (*at, "images", ch)
                    if ch not in step.channels:
                        self.error(
                            loc,
                            f"the step chooses an image for {ch!r}, which it does not post to",
                            "name one of the step's channels: " + ", ".join(step.channels),
                        )
                        continue
                    self._check_step_image(loc, chosen, [ch], languages)
                for i, ch in enumerate(step.channels):
                    if ch not in self.config.channels or step.image_for(ch) is not None:
                        continue
                    cls = get_channel_class(self.config.channels[ch].type)
                    bare = [lang for lang, v in versions.items() if not v.images]
                    if cls.needs_image and bare:
                        self.error(
                            (*at, "channels", i),
                            f"{cls.type} posts need an image, and the statement "
                            f"{campaign.statement!r} has none in {', '.join(bare)}",
                            "add image: (file and alt text) to the statement's front matter, "
                            f"or choose one in the step: images: {{{ch}: {{file: …, alt: …}}}}",
                        )
            # The channels that post the statement's own images (not a step's choice).
            channels_used = {
                ch
                for step in campaign.steps.values()
                for ch in step.channels
                if step.image_for(ch) is None
            }
            for ch in sorted(channels_used):
                if ch not in self.config.channels:
                    continue
                cls = get_channel_class(self.config.channels[ch].type)
                limits = cls.image_limits
                if limits is None:
                    continue
                for statement in versions.values():
                    if len(statement.images) > limits.max_images:
                        self.diagnostics.append(
                            Diagnostic(
                                statement.path,
                                statement.images[limits.max_images].line,
                                statement.images[limits.max_images].column,
                                f"{cls.type} takes at most {limits.max_images} images "
                                f"(channel {ch!r})",
                                "name fewer images",
                            )
                        )
                    for image in statement.images:
                        for problem in limits.problems(image.info):
                            self.diagnostics.append(
                                Diagnostic(
                                    statement.path,
                                    image.line,
                                    image.column,
                                    f"{cls.type} would refuse {image.file}: {problem}",
                                    "resize or convert the image, or use another one",
                                )
                            )

    def _check_step_image(
        self,
        loc: tuple[str | int, ...],
        image: StepImage,
        channels: list[str],
        languages: list[str],
    ) -> None:
        """An image a step chooses: a file each of `channels` takes, alt text in every
        language of the campaign."""
        missing = [lang for lang in languages if not image.alt.get(lang, "").strip()]
        if missing:
            self.error(
                (*loc, "alt"),
                f"the step's image has no alt text in {', '.join(missing)}",
                "add it: alt: {" + ", ".join(f"{lang}: ..." for lang in languages) + "}",
            )
        try:
            info = inspect(self.project.statements_dir / image.file)
        except ValueError as e:
            self.error((*loc, "file"), str(e), "the path is relative to the statements folder")
            return
        for ch in channels:
            if ch not in self.config.channels:
                continue
            cls = get_channel_class(self.config.channels[ch].type)
            for problem in cls.image_limits.problems(info) if cls.image_limits else []:
                self.error(
                    (*loc, "file"),
                    f"{cls.type} would refuse {image.file}: {problem}",
                    "resize or convert the image, or use another one"
                    + (
                        f", or choose another for {ch} (images: {{{ch}: ...}})"
                        if len(channels) > 1
                        else ""
                    ),
                )

    def _template_names(self) -> set[str]:
        return set(self.renderer.templates.all_files())

    def _has_template(
        self, template: str, channel: str, known: set[str], chapter: str | None = None
    ) -> bool:
        ch = self.config.channels[channel]
        langs = self.config.all_languages
        if chapter is not None:
            # templates/<chapter>/… stands in for templates/…
            known = known | {n.removeprefix(f"{chapter}/") for n in known}
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
                d = _template_diagnostic(self.project, str(e))
                self.diagnostics.append(dataclasses.replace(d, scope="template"))
        return ok

    def check_rendering(self) -> None:
        """Render every step on every channel in every language with a sample context."""
        seen: set[tuple[str, str]] = set()
        for cid, campaign in self.config.campaigns.items():
            if cid in self.no_statement:
                continue
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
                            if (cid, d.format()) not in seen:
                                seen.add((cid, d.format()))
                                self.block(cid, d)
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
            (*self.campaign_loc(cid), "steps", sid, "template"),
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
