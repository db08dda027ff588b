"""A loaded project: campaigns.yaml plus the folders it points at."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from scheduler import settings
from scheduler.config.diagnostics import schema_diagnostics
from scheduler.config.model import Config
from scheduler.config.yamlfile import YamlDocument, load_yaml
from scheduler.errors import ConfigError, Diagnostic

CONFIG_ENV = settings.CONFIG.name
DEFAULT_CONFIG = settings.CONFIG.default


@dataclass(frozen=True)
class Project:
    config: Config
    path: Path
    document: YamlDocument
    set_aside: frozenset[tuple[str, str]] = frozenset()
    # Campaigns that cannot be sent, with why: a problem of their own (an entry that fails
    # the schema, a missing statement, a template that fails) stops them and nothing else.
    blocked: Mapping[str, tuple[Diagnostic, ...]] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def statements_dir(self) -> Path:
        return self.base_dir / self.config.settings.statements_dir

    @property
    def templates_dir(self) -> Path:
        return self.base_dir / self.config.settings.templates_dir

    @property
    def display(self) -> str:
        return self.document.path

    def relative(self, path: Path) -> str:
        """How to show a project file in messages: relative to where the user stands."""
        try:
            return os.path.relpath(path)
        except ValueError:
            return str(path)


def config_path(option: str | Path | None) -> Path:
    return Path(option or settings.config_path())


def load_project(option: str | Path | None = None) -> Project:
    """Read and schema-check campaigns.yaml; raise ConfigError with every problem found."""
    project, problems = load_project_partially(option)
    if problems or project is None:
        raise ConfigError(problems)
    return project


# Sections whose entries can be set aside one by one when they fail the schema.
_NAMED_SECTIONS = ("senders", "lists", "channels", "campaigns", "chapters")


def load_project_partially(
    option: str | Path | None = None,
) -> tuple[Project | None, list[Diagnostic]]:
    """Like load_project, but when some entries fail the schema, also return a project made of
    the entries that passed, so validation can go on and report everything at once.

    `Project.set_aside` names the entries left out, so nobody reports a reference to them as
    unknown.
    """
    path = config_path(option)
    display = os.path.relpath(path) if path.is_absolute() else str(path)
    document = load_yaml(path, display)
    if not isinstance(document.data, dict):
        raise ConfigError(
            [
                Diagnostic(
                    display,
                    1,
                    1,
                    "campaigns.yaml must be a mapping with organization:, "
                    "channels:, lists: and campaigns:",
                )
            ]
        )
    try:
        config = Config.model_validate(document.data)
    except ValidationError as e:
        problems = schema_diagnostics(document, e, Config)
        errors = e.errors()
    else:
        return Project(config=config, path=path.resolve(), document=document), []
    data = copy.deepcopy(document.data)
    set_aside: set[tuple[str, str]] = set()
    for err in errors:
        loc = err["loc"]
        if len(loc) >= 4 and loc[0] == "chapters" and loc[2] == "campaigns":
            # A chapter's broken campaign is set aside alone, not the whole chapter.
            chapter = data.get("chapters", {}).get(loc[1])
            section = chapter.get("campaigns") if isinstance(chapter, dict) else None
            if isinstance(section, dict) and loc[3] in section:
                del section[loc[3]]
                set_aside.add(("campaigns", f"{loc[1]}/{loc[3]}"))
            continue
        if len(loc) >= 2 and loc[0] in _NAMED_SECTIONS:
            section = data.get(loc[0])
            if isinstance(section, dict) and loc[1] in section:
                del section[loc[1]]
                set_aside.add((str(loc[0]), str(loc[1])))
    problems = [_scoped(d, err["loc"], set_aside) for d, err in zip(problems, errors, strict=True)]
    try:
        partial = Config.model_validate(data)
    except ValidationError:
        return None, problems
    project = Project(
        config=partial, path=path.resolve(), document=document, set_aside=frozenset(set_aside)
    )
    return project, problems


def _scoped(
    d: Diagnostic, loc: tuple[str | int, ...], set_aside: set[tuple[str, str]]
) -> Diagnostic:
    """A schema error inside one campaign blocks that campaign; any other, the whole file."""
    if len(loc) >= 2 and loc[0] == "campaigns" and ("campaigns", str(loc[1])) in set_aside:
        return dataclasses.replace(d, scope="campaign", campaign=str(loc[1]))
    return d


__all__ = ["Diagnostic", "Project", "config_path", "load_project", "load_project_partially"]
