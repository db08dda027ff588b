"""Review bound to the content: the fingerprint covers everything an occurrence sends, any
edit voids an approval and shows as a diff, only approvers approve, and the gate holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from conftest import MINIMAL, ProjectFactory
from sqlalchemy.engine import Engine

from scheduler import calendar
from scheduler.accounts import store as accounts
from scheduler.actions import Actor
from scheduler.clock.policy import Action, decide
from scheduler.config.project import Project, load_project
from scheduler.errors import ReviewError
from scheduler.review import approvals, gate
from scheduler.review.content import render_content
from scheduler.review.policy import review_for
from scheduler.store.schema import Role

REVIEWED = MINIMAL.replace(
    "    audience: [members]\n", "    audience: [members]\n    review: required\n"
)
ONE_OFF = MINIMAL.replace('date: "05-01"', 'date: "2030-05-01"')


def occurrence(project: Project) -> calendar.Occurrence:
    return calendar.occurrence(project.config, "may-day/2030/statement")


def approver(engine: Engine, email: str = "ana@example.org") -> accounts.Account:
    return accounts.add(engine, email, Role.APPROVER)


def test_the_fingerprint_covers_what_is_sent(make_project: ProjectFactory) -> None:
    path = make_project(REVIEWED)
    project = load_project(path)
    base = render_content(project, occurrence(project))
    assert "=== email email [en]" in base.text and "=== email email [es]" in base.text
    assert "=== mastodon mastodon post [en]" in base.text and "--- part 1" in base.text
    assert "Subject: " in base.text and "sender of email: Test Org <news@example.org>" in base.text
    assert render_content(project, occurrence(project)) == base  # deterministic

    def changed(edit: Callable[[], None]) -> str:
        edit()
        fresh = load_project(path)
        return render_content(fresh, occurrence(fresh)).fingerprint

    statement = path.parent / "statements" / "may-day.es.md"
    template = path.parent / "templates" / "post" / "statement.txt"
    yaml = path.read_text()
    edits: list[Callable[[], None]] = [
        lambda: statement.write_text(statement.read_text() + "\nUna frase más.\n"),
        lambda: template.write_text(template.read_text() + "\n#MayDay\n"),
        lambda: path.write_text(yaml.replace("name: Test Org, address", "name: Other, address")),
        lambda: path.write_text(
            yaml.replace("audience: [members]", "audience: [members, press]").replace(
                "  members: {source: members.csv}\n",
                "  members: {source: members.csv}\n  press: {name: Press}\n",
            )
        ),
        lambda: path.write_text(yaml.replace("channels: [email, mastodon]", "channels: [email]")),
    ]
    seen = {base.fingerprint}
    for edit in edits:
        seen.add(changed(edit))
    assert len(seen) == len(edits) + 1  # every edit gave a new fingerprint


def test_an_edit_voids_the_approval_and_shows_as_a_diff(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    path = make_project(REVIEWED)
    project = load_project(path)
    occ = occurrence(project)
    ana = approver(store_engine)
    before = approvals.status(project, store_engine, occ)
    assert before.needed and not before.approved and before.missing == 1
    after = approvals.approve(project, store_engine, occ, ana, Actor(ana.email, "192.0.2.1"))
    assert after.approved and [a.approver for a in after.valid] == ["ana@example.org"]
    with pytest.raises(ReviewError, match="approved this content"):
        approvals.approve(project, store_engine, occ, ana, Actor(ana.email))
    statement = path.parent / "statements" / "may-day.en.md"
    statement.write_text(statement.read_text().replace("May Day", "Labour Day", 1))
    edited = load_project(path)
    voided = approvals.status(edited, store_engine, occ)
    assert not voided.approved and voided.valid == [] and len(voided.voided) == 1
    diff = voided.diff()
    assert diff.startswith("--- approved by ana@example.org")
    assert "-" in diff and "+" in diff and "Labour Day" in diff
    assert any(line.startswith("+") and "Labour Day" in line for line in diff.splitlines())
    # Approving the new content counts again.
    again = approvals.approve(edited, store_engine, occ, ana, Actor(ana.email))
    assert again.approved and again.diff() != ""  # the old approval's diff is kept to see


def test_approvers_and_who_may_approve(make_project: ProjectFactory, store_engine: Engine) -> None:
    two = REVIEWED.replace(
        "    review: required\n",
        "    review: {approvers: 2, by: [ana@example.org, bo@example.org]}\n",
    )
    project = load_project(make_project(two))
    occ = occurrence(project)
    ana, bo, cy = (approver(store_engine, f"{n}@example.org") for n in ("ana", "bo", "cy"))
    with pytest.raises(ReviewError, match="not one of the approvers"):
        approvals.approve(project, store_engine, occ, cy, Actor(cy.email))
    first = approvals.approve(project, store_engine, occ, ana, Actor(ana.email))
    assert not first.approved and first.missing == 1
    second = approvals.approve(project, store_engine, occ, bo, Actor(bo.email))
    assert second.approved


def test_review_defaults(make_project: ProjectFactory) -> None:
    yearly = load_project(make_project(MINIMAL))
    assert review_for(yearly.config, occurrence(yearly), approvers_exist=True) is None
    one_off = load_project(make_project(ONE_OFF))
    occ = calendar.expand(
        one_off.config,
        dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
    )[0]
    # A rapid-response one-off needs one approval once the alliance has approvers ...
    assert review_for(one_off.config, occ, approvers_exist=True) is not None
    # ... and cannot be held by a process nobody set up.
    assert review_for(one_off.config, occ, approvers_exist=False) is None
    opted_out = load_project(
        make_project(
            ONE_OFF.replace(
                "    audience: [members]\n", "    audience: [members]\n    review: none\n"
            )
        )
    )
    assert review_for(opted_out.config, occ, approvers_exist=True) is None
    step_only = load_project(
        make_project(
            MINIMAL.replace(
                "        template: statement\n",
                "        template: statement\n        review: required\n",
            )
        )
    )
    assert review_for(step_only.config, occurrence(step_only), approvers_exist=False) is not None


def test_the_gate_holds_until_approved_then_fires_late_or_misses(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = load_project(make_project(REVIEWED))
    occ = occurrence(project)
    ana = approver(store_engine)
    at = occ.instant + dt.timedelta(seconds=1)
    held = gate.unapproved(project, store_engine, [occ], {}, at)
    assert held == {occ.id: "waiting for 1 approval(s)"}
    [decision] = decide(project.config, [occ], {}, set(), at, held=held)
    assert decision.action is Action.HOLD
    window = project.config.campaigns["may-day"].catch_up_window
    [late] = decide(
        project.config, [occ], {}, set(), occ.instant + window + dt.timedelta(1), held=held
    )
    assert late.action is Action.MISSED and "held for review" in str(late.note)
    approvals.approve(project, store_engine, occ, ana, Actor(ana.email))
    later = occ.instant + dt.timedelta(minutes=30)
    assert gate.unapproved(project, store_engine, [occ], {}, later) == {}
    [fires] = decide(project.config, [occ], {}, set(), later, held={})
    assert fires.action is Action.LATE
    # Not yet due: never held (and never rendered).
    assert gate.unapproved(project, store_engine, [occ], {}, occ.instant - dt.timedelta(1)) == {}


def test_approvers_are_reminded_once_before_the_instant(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from delivery_helpers import outbox

    from scheduler.clock.daemon import Clock

    text = REVIEWED.replace("    review: required\n", "    review: {remind: 2h}\n")
    project = load_project(make_project(text))
    occ = occurrence(project)
    approver(store_engine)
    accounts.add(store_engine, "org@example.org", Role.ORGANIZER)
    clock = Clock(project, store_engine, now=lambda: occ.instant - dt.timedelta(hours=3))
    try:
        clock.remind(occ.instant - dt.timedelta(hours=3))  # too early
        assert outbox(project) == []
        clock.remind(occ.instant - dt.timedelta(hours=1, minutes=59))
        clock.remind(occ.instant - dt.timedelta(hours=1))  # once per cause
        [letter] = outbox(project)
        body = letter.read_text()
        assert "To: ana@example.org" in body and "Review needed before" in body
    finally:
        clock.ctx.close()


def test_a_held_occurrence_cancelled_is_held_no_more(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from scheduler import actions
    from scheduler.clock.daemon import Clock
    from scheduler.review import holds

    project = load_project(make_project(REVIEWED))
    occ = occurrence(project)
    approver(store_engine)
    after = occ.instant + dt.timedelta(minutes=1)
    clock = Clock(project, store_engine, now=lambda: after)
    try:
        clock.handle([occ], now=after)
        assert [h.occurrence_id for h in holds.open_holds(store_engine)] == [occ.id]
        actions.cancel(store_engine, project.config, occ.id, Actor("org@example.org"))
        clock.handle([occ], now=after + dt.timedelta(seconds=5))
        assert holds.open_holds(store_engine) == []
        hold = holds.get(store_engine, occ.id)
        assert hold is not None and hold.outcome == "cancelled"
    finally:
        clock.ctx.close()


def test_images_and_their_alt_text_are_part_of_the_fingerprint(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    from PIL import Image

    path = make_project(REVIEWED)
    project = load_project(path)
    occ = occurrence(project)
    base = render_content(project, occ)
    # Each email language and the post name the image by its content hash and its alt text.
    assert base.text.count("--- image images/may-day.png sha256:") == 3
    ana = approver(store_engine)
    approvals.approve(project, store_engine, occ, ana, Actor(ana.email))

    # A new picture under the same name voids the approval; the diff names the image.
    image = path.parent / "statements" / "images" / "may-day.png"
    Image.new("RGB", (1200, 630), "purple").save(image)
    replaced = approvals.status(load_project(path), store_engine, occ)
    assert not replaced.approved and len(replaced.voided) == 1
    changed = [line for line in replaced.diff().splitlines() if line[:1] in "+-"]
    assert any(line.startswith("+--- image images/may-day.png sha256:") for line in changed)
    assert any(line.startswith("---- image images/may-day.png sha256:") for line in changed)

    # Approved again, an edit of the Spanish alt text alone voids it too.
    approvals.approve(load_project(path), store_engine, occ, ana, Actor(ana.email))
    assert approvals.status(load_project(path), store_engine, occ).approved
    statement = path.parent / "statements" / "may-day.es.md"
    text = statement.read_text(encoding="utf-8")
    alt = next(line for line in text.splitlines() if line.strip().startswith("alt:"))
    statement.write_text(text.replace(alt, '  alt: "Un cartel morado"', 1), encoding="utf-8")
    edited = approvals.status(load_project(path), store_engine, occ)
    assert not edited.approved
    assert "+alt: Un cartel morado" in edited.diff().splitlines()
