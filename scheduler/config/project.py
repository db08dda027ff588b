"""A loaded project: campaigns.yaml plus the folders it points at."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from scheduler.config.diagnostics import schema_diagnostics
from scheduler.config.model import Config
from scheduler.config.yamlfile import YamlDocument, load_yaml
from scheduler.errors import ConfigError, Diagnostic

CONFIG_ENV = "SCHEDULER_CONFIG"
DEFAULT_CONFIG = "campaigns.yaml"


@dataclass(frozen=True)
class Project:
    config: Config
    path: Path
    document: YamlDocument

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
    return Path(option or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_project(option: str | Path | None = None) -> Project:
    """Read and schema-check campaigns.yaml; raise ConfigError with every problem found."""
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
        raise ConfigError(schema_diagnostics(document, e, Config)) from None
    return Project(config=config, path=path.resolve(), document=document)


__all__ = ["Diagnostic", "Project", "config_path", "load_project"]
