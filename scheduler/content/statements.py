"""Statements: Markdown with YAML front matter, one file per language (`may-day.es.md`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scheduler.config.diagnostics import schema_diagnostics
from scheduler.config.yamlfile import YamlDocument, parse_yaml
from scheduler.content.images import MAX_ALT, MAX_IMAGES, ImageInfo, inspect
from scheduler.errors import ConfigError, Diagnostic

# Raw HTML in a statement is shown as text: the words are data, never markup or template.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


class ImageRef(BaseModel):
    """An image of the statement: its file (under the statements folder) and its alt text in
    this file's language, which screen readers read out to followers who cannot see it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    file: str = Field(min_length=1, description="relative to the statements folder")
    alt: str = Field(min_length=1, max_length=MAX_ALT)


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    subtitle: str | None = None
    summary: str = Field(min_length=1, description="short text for social posts")
    signatory: str | None = None
    canonical_url: str | None = Field(default=None, pattern=r"^https?://")
    language: str
    image: ImageRef | None = None
    images: list[ImageRef] = Field(default_factory=list, max_length=MAX_IMAGES)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementImage:
    """One image as a statement names it, checked: the file exists and is JPEG, PNG or WebP."""

    file: str  # as written, relative to the statements folder: the image's stable name
    path: Path
    alt: str
    info: ImageInfo
    line: int  # where `file:` is written, for diagnostics
    column: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    slug: str
    language: str
    title: str
    subtitle: str | None
    summary: str
    signatory: str | None
    canonical_url: str | None
    markdown: str
    html: str
    text: str
    path: str
    images: tuple[StatementImage, ...] = ()


def statement_path(directory: Path, slug: str, language: str) -> Path:
    return directory / f"{slug}.{language}.md"


def statement_folder(directory: Path, slug: str, chapter: str | None) -> Path:
    """Where a chapter's statement `slug` lives: `statements/<chapter>/` when the chapter wrote
    one there (in any language), else the alliance's `statements/` (a chapter relaying the
    alliance's words). Decided per statement, never per language, so no email mixes the two."""
    if chapter:
        own = directory / chapter
        if any(own.glob(f"{slug}.*.md")):
            return own
    return directory


def load_statement(
    directory: Path,
    slug: str,
    language: str,
    *,
    display_dir: str = "",
    images_dir: Path | None = None,
) -> Statement:
    """`images_dir`: where image files are named from (the statements folder, also for a
    chapter's own statement in a subfolder); default `directory`."""
    path = statement_path(directory, slug, language)
    shown = str(Path(display_dir) / path.name) if display_dir else str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                Diagnostic(
                    shown,
                    0,
                    0,
                    "statement file not found",
                    f"write {shown} (Markdown with front matter), or drop {language!r} "
                    "from the campaign's languages",
                )
            ]
        ) from None
    return parse_statement(
        source, slug=slug, language=language, path=shown, directory=images_dir or directory
    )


def parse_statement(
    source: str, *, slug: str, language: str, path: str, directory: Path | None = None
) -> Statement:
    source = source.removeprefix("\ufeff")
    lines = source.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    1,
                    1,
                    "missing front matter",
                    "start the file with a '---' line, then title:, summary:, language:, "
                    "then another '---' line, then the Markdown text",
                )
            ]
        )
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    1,
                    1,
                    "front matter is not closed",
                    "add a '---' line after the front matter",
                )
            ]
        )
    # Parse with blank lines in front so reported line numbers match the file.
    header = "\n" + "".join(lines[1:end])
    doc = parse_yaml(header, path)
    if not isinstance(doc.data, dict):
        raise ConfigError([Diagnostic(path, 2, 1, "front matter must be key: value lines")])
    try:
        meta = FrontMatter.model_validate(doc.data)
    except ValidationError as e:
        raise ConfigError(schema_diagnostics(doc, e, FrontMatter)) from None
    if meta.language != language:
        line, col = doc.position(("language",))
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    line,
                    col,
                    f"front matter says language {meta.language!r} but the file name says "
                    f"{language!r}",
                    f"rename the file to {slug}.{meta.language}.md or fix the language",
                )
            ]
        )
    images = _images(meta, doc, path, directory)
    body = "".join(lines[end + 1 :]).strip() + "\n"
    tokens = _markdown.parse(body)
    return Statement(
        slug=slug,
        language=language,
        title=meta.title,
        subtitle=meta.subtitle,
        summary=meta.summary,
        signatory=meta.signatory,
        canonical_url=meta.canonical_url,
        markdown=body,
        html=_markdown.renderer.render(tokens, _markdown.options, {}),
        text=markdown_to_text(tokens),
        path=path,
        images=images,
    )


def _images(
    meta: FrontMatter, doc: YamlDocument, path: str, directory: Path | None
) -> tuple[StatementImage, ...]:
    """The front matter's images, each file checked; every problem reported at once."""
    if meta.image is not None and meta.images:
        line, col = doc.key_position(("images",))
        raise ConfigError(
            [
                Diagnostic(
                    path,
                    line,
                    col,
                    "give either image: or images:, not both",
                    "move the single image into the images: list",
                )
            ]
        )
    refs: list[tuple[tuple[str | int, ...], ImageRef]] = (
        [(("image",), meta.image)] if meta.image else []
    )
    refs += [(("images", i), ref) for i, ref in enumerate(meta.images)]
    found: list[StatementImage] = []
    problems: list[Diagnostic] = []
    for loc, ref in refs:
        line, col = doc.position((*loc, "file"))
        if directory is None:
            continue  # parsed without a folder (a test of the text alone): nothing to open
        file_path = directory / ref.file
        try:
            if Path(ref.file).is_absolute() or ".." in Path(ref.file).parts:
                raise ValueError(f"{ref.file!r} must be a path inside the statements folder")
            info = inspect(file_path)
        except ValueError as e:
            problems.append(
                Diagnostic(
                    path,
                    line,
                    col,
                    str(e),
                    "images live under the statements folder, e.g. images/may-day.png; "
                    "JPEG, PNG or WebP",
                )
            )
            continue
        found.append(
            StatementImage(
                file=ref.file, path=file_path, alt=ref.alt, info=info, line=line, column=col
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(found)


_LIST_END = ("\0", False)


def markdown_to_text(tokens: list[Token]) -> str:
    """Readable plain text: paragraphs kept, emphasis dropped, links as 'text (url)'."""
    blocks: list[tuple[str, bool]] = []  # (text, is a list item)
    prefix_stack: list[str] = []
    ordered_counters: list[int] = []
    for tok in tokens:
        if tok.type == "bullet_list_open":
            prefix_stack.append("- ")
            ordered_counters.append(0)
        elif tok.type == "ordered_list_open":
            prefix_stack.append("#")
            ordered_counters.append(int(tok.attrGet("start") or 1) - 1)
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            prefix_stack.pop()
            ordered_counters.pop()
            if not prefix_stack:
                blocks.append(_LIST_END)
        elif tok.type == "list_item_open" and ordered_counters:
            ordered_counters[-1] += 1
        elif tok.type == "inline":
            text = _inline_text(tok.children or [])
            if prefix_stack and prefix_stack[-1] == "#":
                marker = f"{ordered_counters[-1]}. "
            elif prefix_stack:
                marker = "- "
            else:
                marker = ""
            indent = "  " * max(0, len(prefix_stack) - 1)
            body = text.replace("\n", "\n" + indent + " " * len(marker))
            blocks.append((indent + marker + body, bool(prefix_stack)))
        elif tok.type in ("fence", "code_block"):
            blocks.append((tok.content.rstrip("\n"), False))
        elif tok.type == "hr":
            blocks.append(("----", False))
    # List items sit on consecutive lines; everything else is separated by a blank line.
    out: list[str] = []
    previous_item = False
    for block, is_item in blocks:
        if (block, is_item) == _LIST_END:
            previous_item = False  # two lists in a row stay apart
            continue
        if out and not (is_item and previous_item):
            out.append("")
        out.append(block)
        previous_item = is_item
    return "\n".join(out).strip() + "\n"


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    href_stack: list[tuple[str, int]] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak" or child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "link_open":
            href_stack.append((str(child.attrGet("href") or ""), len(parts)))
        elif child.type == "link_close" and href_stack:
            href, start = href_stack.pop()
            label = "".join(parts[start:])
            if href and href != label and not href.startswith("mailto:" + label):
                parts.append(f" ({href})")
        elif child.type == "image":
            parts.append(child.content or "")
    return "".join(parts)
