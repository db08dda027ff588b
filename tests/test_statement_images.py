"""Statement images in front matter: `validate` refuses what a follower or a platform would
not get right (no alt text, no file, a format or shape a platform refuses), at FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

from conftest import MINIMAL, ProjectFactory
from PIL import Image

from scheduler.errors import Diagnostic
from scheduler.validate import validate_project

WITH_TELEGRAM = MINIMAL.replace(
    "channels:\n",
    'channels:\n  telegram: {type: telegram, bot_token: "${TELEGRAM_BOT_TOKEN}", chat_id: 1}\n',
).replace("channels: [email, mastodon]", "channels: [email, mastodon, telegram]")


def front_matter(path: Path, language: str, image_block: str) -> Path:
    statement = path.parent / "statements" / f"may-day.{language}.md"
    text = statement.read_text(encoding="utf-8")
    head, _, rest = text.partition("\nimage:\n")
    rest = rest.split("\n---\n", 1)[1]
    statement.write_text(f"{head}\n{image_block}---\n{rest}", encoding="utf-8")
    return statement


def errors(path: Path) -> list[Diagnostic]:
    return validate_project(path).errors


def line_of(statement: Path, fragment: str) -> int:
    lines = statement.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if fragment in line)


def test_the_examples_carry_an_image_with_alt_text_in_every_language(
    make_project: ProjectFactory,
) -> None:
    root = Path(__file__).resolve().parent.parent
    report = validate_project(root / "campaigns.yaml")
    assert report.ok, [d.format() for d in report.diagnostics]
    assert report.project is not None
    from scheduler.content.render import Renderer

    renderer = Renderer(report.project)
    for campaign in report.project.config.campaigns.values():
        for lang in ("en", "es"):
            (image,) = renderer.statement(campaign.statement, lang).images
            assert image.alt and image.info.format == "PNG"


def test_an_image_without_alt_text_is_refused_where_it_is_written(
    make_project: ProjectFactory,
) -> None:
    path = make_project(WITH_TELEGRAM)
    statement = front_matter(path, "es", "image:\n  file: images/may-day.png\n")
    (d,) = errors(path)
    assert d.file.endswith("may-day.es.md") and "'alt'" in d.message
    assert d.line == line_of(statement, "image:")


def test_a_missing_file_and_an_unsupported_format_are_refused(
    make_project: ProjectFactory,
) -> None:
    path = make_project(WITH_TELEGRAM)
    statement = front_matter(
        path,
        "en",
        'images:\n  - file: images/nope.png\n    alt: "A"\n'
        '  - file: images/anim.gif\n    alt: "B"\n',
    )
    Image.new("RGB", (10, 10)).save(path.parent / "statements/images/anim.gif", "GIF")
    found = errors(path)
    missing = next(d for d in found if "nope.png" in d.message)
    assert "not found" in missing.message
    assert (missing.line, missing.column) == (line_of(statement, "nope.png"), 11)
    gif = next(d for d in found if "anim.gif" in d.message)
    assert "GIF" in gif.message and gif.line == line_of(statement, "anim.gif")
    assert "JPEG, PNG or WebP" in (gif.hint or "") + gif.message


def test_a_shape_a_platform_refuses_is_reported_per_platform(
    make_project: ProjectFactory,
) -> None:
    path = make_project(WITH_TELEGRAM)
    Image.new("RGB", (60, 2000), "red").save(path.parent / "statements/images/banner.png")
    for lang in ("en", "es"):
        statement = front_matter(
            path, lang, f'image:\n  file: images/banner.png\n  alt: "alt {lang}"\n'
        )
    (d,) = [d for d in errors(path) if d.file.endswith("may-day.es.md")]
    assert d.message.startswith("telegram would refuse images/banner.png: aspect ratio 60:2000")
    assert (d.line, d.column) == (line_of(statement, "banner.png"), 9)
    assert d.format().startswith(f"{d.file}:{d.line}:9: error: telegram would refuse")


def test_every_language_names_the_images(make_project: ProjectFactory) -> None:
    path = make_project(WITH_TELEGRAM)
    statement = path.parent / "statements" / "may-day.es.md"
    text = statement.read_text(encoding="utf-8")
    head, _, rest = text.partition("\nimage:\n")
    statement.write_text(head + "\n---\n" + rest.split("\n---\n", 1)[1], encoding="utf-8")
    (d,) = errors(path)
    assert d.file.endswith("may-day.es.md") and "would get no alt text" in d.message


def test_a_step_may_choose_its_own_image_with_alt_text_in_every_language(
    make_project: ProjectFactory,
) -> None:
    import datetime as dt

    from scheduler.config.project import load_project
    from scheduler.preview import build_preview

    card = (
        "        image:\n"
        "          file: images/countdown.png\n"
        '          alt: {en: "A countdown card: 7 days to May Day"}\n'
    )
    text = WITH_TELEGRAM.replace(
        "        template: statement\n", "        template: statement\n" + card
    )
    path = make_project(text)
    Image.new("RGB", (1080, 1080), "navy").save(path.parent / "statements/images/countdown.png")
    (d,) = errors(path)
    assert d.file.endswith("campaigns.yaml") and "no alt text in es" in d.message
    assert (
        d.line
        == text.splitlines().index('          alt: {en: "A countdown card: 7 days to May Day"}') + 1
    )
    path.write_text(
        text.replace(
            'alt: {en: "A countdown card: 7 days to May Day"}',
            "alt: {en: A countdown card, es: Una tarjeta de cuenta atrás}",
        ),
        encoding="utf-8",
    )
    assert errors(path) == []
    items = build_preview(
        load_project(path),
        "may-day",
        channel="telegram",
        now=dt.datetime(2030, 4, 1, tzinfo=dt.UTC),
    )
    (item,) = items
    (image,) = item.images
    assert image["name"] == "images/countdown.png" and image["width"] == 1080


def test_a_step_may_choose_an_image_per_channel(make_project: ProjectFactory) -> None:
    import datetime as dt

    from scheduler.config.project import load_project
    from scheduler.preview import build_preview

    card = (
        "        images:\n"
        "          telegram:\n"
        "            file: images/tall.png\n"
        '            alt: {en: "A countdown card"}\n'
        "          bluesky:\n"
        "            file: images/none.png\n"
        "            alt: {en: x, es: y}\n"
    )
    text = WITH_TELEGRAM.replace(
        "        template: statement\n", "        template: statement\n" + card
    )
    path = make_project(text)
    Image.new("RGB", (60, 2000), "navy").save(path.parent / "statements/images/tall.png")
    lines = text.splitlines()
    found = {d.message.split(":")[0]: d for d in errors(path)}
    alt = found["the step's image has no alt text in es"]
    assert alt.line == lines.index('            alt: {en: "A countdown card"}') + 1
    refused = found["telegram would refuse images/tall.png"]
    assert "aspect ratio 60:2000" in refused.message
    assert (refused.line, refused.column) == (
        lines.index("            file: images/tall.png") + 1,
        19,
    )
    stray = found["the step chooses an image for 'bluesky', which it does not post to"]
    assert stray.line == lines.index("          bluesky:") + 1 and len(found) == 3

    Image.new("RGB", (1080, 1080), "navy").save(path.parent / "statements/images/tall.png")
    path.write_text(
        text.replace('alt: {en: "A countdown card"}', "alt: {en: A card, es: Una tarjeta}")
        .replace("          bluesky:\n            file: images/none.png\n", "")
        .replace("            alt: {en: x, es: y}\n", ""),
        encoding="utf-8",
    )
    assert errors(path) == []
    project = load_project(path)
    now = dt.datetime(2030, 4, 1, tzinfo=dt.UTC)
    (telegram,) = build_preview(project, "may-day", channel="telegram", now=now)
    (mastodon,) = build_preview(project, "may-day", channel="mastodon", now=now)
    assert [i["name"] for i in telegram.images] == ["images/tall.png"]
    assert [i["alt"] for i in telegram.images] == ["A card"]  # the preview's language: en
    assert [i["name"] for i in mastodon.images] != ["images/tall.png"]  # the statement's
    assert mastodon.images
