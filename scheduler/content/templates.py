"""Jinja2 templates: sandboxed, undefined variables are errors, HTML autoescaped.

Layout of `templates/`:

    email/<template>.html        HTML email body (may extend email/base.html)
    email/<template>.txt         plain-text email body
    post/<template>.txt          a social post
    post/<template>.<type>.txt   a per-platform override (e.g. post/statement.bluesky.txt)

Any of them may also exist per language (`email/statement.es.html`,
`post/countdown.mastodon.es.txt`); the most specific file wins. A chapter's folder
`templates/<chapter>/` holds its overrides: any file there wins over the alliance's file of the
same name, also where another template extends or includes it (`email/base.html`).

Filters `date`, `datetime` and `time` format with Babel in the rendered language
(`{{ occurrence.date | date }}` is `8 de marzo de 2027` in Spanish).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from scheduler.content.dates import install_date_filters
from scheduler.errors import TemplateError


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html", ".htm"))


class Templates:
    """All templates of one project directory."""

    def __init__(self, directory: Path, chapter: str | None = None) -> None:
        self.directory = directory
        self.chapter = chapter
        # The chapter's folder first: its files stand in for the alliance's of the same name.
        self.search = [directory / chapter, directory] if chapter else [directory]
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.search]),
            undefined=jinja2.StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        # Subjects and other one-line strings are never HTML.
        self.string_env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
        install_date_filters(self.env)
        install_date_filters(self.string_env)
        self._inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)

    # --- lookup ---------------------------------------------------------------------------

    @staticmethod
    def email_candidates(template: str, part: str, language: str) -> list[str]:
        return [f"email/{template}.{language}.{part}", f"email/{template}.{part}"]

    @staticmethod
    def post_candidates(template: str, platform: str, language: str) -> list[str]:
        return [
            f"post/{template}.{platform}.{language}.txt",
            f"post/{template}.{platform}.txt",
            f"post/{template}.{language}.txt",
            f"post/{template}.txt",
        ]

    def exists(self, name: str) -> bool:
        return any((d / name).is_file() for d in self.search)

    def pick(self, candidates: list[str]) -> str | None:
        return next((c for c in candidates if self.exists(c)), None)

    def all_files(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.directory)).replace("\\", "/")
            for p in self.directory.rglob("*")
            if p.is_file() and p.suffix in (".html", ".txt")
        )

    # --- compile and render ---------------------------------------------------------------

    def compile(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateSyntaxError as e:
            where = f"{self.directory / (e.name or name)}:{e.lineno}"
            raise TemplateError(f"{where}: syntax error: {e.message}") from None
        except jinja2.TemplateNotFound as e:
            raise TemplateError(f"template {e.name} not found in {self.directory}") from None

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        template = self.compile(name)
        try:
            return template.render(context)
        except jinja2.UndefinedError as e:
            raise TemplateError(
                f"{self._where(e, name)}: {e.message}{_undefined_hint(context)}"
            ) from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self._where(e, name)}: {e}") from None
        except Exception as e:  # a filter given the wrong type, a division by zero, ...
            raise TemplateError(f"{self._where(e, name)}: {type(e).__name__}: {e}") from None

    def render_string(self, source: str, context: Mapping[str, Any], *, what: str) -> str:
        try:
            return self.string_env.from_string(source).render(context)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{what}: syntax error: {e.message}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"{what}: {e}{_undefined_hint(context)}") from None

    def inline_css(self, html: str) -> str:
        return str(self._inliner.inline(html))

    def _where(self, error: BaseException, name: str) -> str:
        """The template file and line the error happened on (Jinja rewrites tracebacks so)."""
        root = str(self.directory)
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            if frame.filename.startswith(root):
                return f"{frame.filename}:{frame.lineno}"
        return str(self.directory / name)


def _undefined_hint(context: Mapping[str, Any]) -> str:
    return "; variables available: " + ", ".join(sorted(context))
