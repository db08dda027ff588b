"""The links in every email: RFC 8058 one-click unsubscribe, the unsubscribe page, and
preferences; signed tokens that cannot be forged, tampered with or pointed at someone else."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from conftest import ProjectFactory
from delivery_helpers import add_subscribers, context, may_day, outbox
from sqlalchemy.engine import Engine
from web_helpers import csrf, page, subscriber_token, web_app, web_project

from scheduler.delivery import ledger
from scheduler.delivery.fire import fire
from scheduler.store import subscribers
from scheduler.tokens import sign

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _member(engine: Engine, address: str = "person0@example.org") -> int:
    add_subscribers(engine, 3)
    stored = subscribers.subscriber(engine, address)
    assert stored is not None
    return int(stored["id"])


def test_one_click_unsubscribe(make_project: ProjectFactory, store_engine: Engine) -> None:
    sid = _member(store_engine)
    client = web_app(web_project(make_project), store_engine).test_client(use_cookies=False)
    url = "/unsubscribe/" + subscriber_token("unsubscribe", sid, "person0@example.org")
    response = client.post(url, data=ONE_CLICK)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers  # RFC 8058: no cookies involved
    assert subscribers.memberships_of(store_engine, sid) == {"members": "unsubscribed"}
    assert subscribers.memberships_of(store_engine, "person1@example.org") == {"members": "active"}
    assert client.post(url, data=ONE_CLICK).status_code == 200  # again: still fine


def test_unsubscribe_page_and_its_button(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    sid = _member(store_engine)
    client = web_app(web_project(make_project), store_engine).test_client()
    url = "/unsubscribe/" + subscriber_token("unsubscribe", sid, "person0@example.org")
    html = page(client, url)
    assert "Members and supporters" in html
    assert "person0@example.org" not in html and "p•••@example.org" in html
    assert subscribers.memberships_of(store_engine, sid) == {"members": "active"}  # GET: no change
    assert client.post(url, data={}).status_code == 400  # the button's form without CSRF
    assert subscribers.memberships_of(store_engine, sid) == {"members": "active"}
    done = client.post(url, data={"csrf_token": csrf(html)})
    assert done.status_code == 200 and "Te has dado de baja" in done.get_data(as_text=True)
    assert subscribers.memberships_of(store_engine, sid) == {"members": "unsubscribed"}


def _tampered(token: str) -> str:
    payload, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return f"{payload}.{flipped}"


@pytest.mark.parametrize("method", ["get", "post"])
def test_bad_tokens_are_refused(
    make_project: ProjectFactory, store_engine: Engine, method: str
) -> None:
    sid = _member(store_engine)
    other = int(subscribers.subscriber(store_engine, "person1@example.org")["id"])  # type: ignore[index]
    good = subscriber_token("unsubscribe", sid, "person0@example.org")
    data = {"s": sid, "e": "person0@example.org", "l": "members"}
    bad = {
        "forged": sign("unsubscribe", data, key=b"someone else's key"),
        "tampered signature": _tampered(good),
        "tampered payload": sign("unsubscribe", {**data, "s": other})[:-4] + good[-4:],
        "other purpose": subscriber_token("preferences", sid, "person0@example.org"),
        # Properly signed, but id and address belong to two people: acts on neither.
        "id of another address": subscriber_token("unsubscribe", other, "person0@example.org"),
        "garbage": "not-a-token",
    }
    client = web_app(web_project(make_project), store_engine).test_client(use_cookies=False)
    for name, token in bad.items():
        call = getattr(client, method)
        response = call(
            f"/unsubscribe/{token}", **({"data": ONE_CLICK} if method == "post" else {})
        )
        assert response.status_code == 400, name
    for who in (sid, other):
        assert subscribers.memberships_of(store_engine, who) == {"members": "active"}


def test_unsubscribe_takes_effect_for_batches_not_yet_sent(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    sid = _member(store_engine)
    occ = may_day(project)
    ledger.claim_occurrence(store_engine, occ)
    assert ledger.fan_out_email(store_engine, occ.id, "email", ["members"]) == 3
    client = web_app(project, store_engine).test_client(use_cookies=False)
    url = "/unsubscribe/" + subscriber_token("unsubscribe", sid, "person0@example.org")
    assert client.post(url, data=ONE_CLICK).status_code == 200
    report = fire(context(project, store_engine), occ)
    assert (report.result.sent, report.result.skipped) == (2, 1)
    recipients = {
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"]
        for p in outbox(project)
    }
    assert not any("person0@" in str(r) for r in recipients)


def test_the_links_in_a_sent_email_work(make_project: ProjectFactory, store_engine: Engine) -> None:
    project = web_project(make_project)
    sid = _member(store_engine)
    fire(context(project, store_engine), may_day(project))
    message = next(
        m
        for m in (
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in outbox(project)
        )
        if "person0@" in str(m["To"])
    )
    header = str(message["List-Unsubscribe"])
    url = re.search(r"<(https://[^>]+)>", header)[1]  # type: ignore[index]
    assert url.startswith("https://lists.example.org/unsubscribe/")
    client = web_app(project, store_engine).test_client(use_cookies=False)
    path = url.removeprefix("https://lists.example.org")
    assert client.post(path, data=ONE_CLICK).status_code == 200
    assert subscribers.memberships_of(store_engine, sid) == {"members": "unsubscribed"}


def test_preferences(make_project: ProjectFactory, store_engine: Engine) -> None:
    sid = _member(store_engine)
    client = web_app(web_project(make_project), store_engine).test_client()
    url = "/preferences/" + subscriber_token("preferences", sid, "person0@example.org")
    html = page(client, url)
    assert '<html lang="es">' in html  # person0 reads Spanish (delivery_helpers)
    assert 'value="members" checked' in html
    assert 'value="news"' in html and 'value="news" checked' not in html  # public, not joined
    assert "Press and allies" not in html  # not public, not theirs

    assert client.post(url, data={"language": "en", "lists": ["news"]}).status_code == 400
    response = client.post(
        url, data={"csrf_token": csrf(html), "language": "en", "lists": ["news", "press"]}
    )
    assert response.status_code == 303
    assert subscribers.memberships_of(store_engine, sid) == {
        "members": "unsubscribed",
        "news": "active",
    }  # press was not offered, so it was not joined
    stored = subscribers.subscriber(store_engine, sid)
    assert stored is not None and stored["language"] == "en"
    saved = page(client, response.headers["Location"])
    assert '<html lang="en">' in saved and "Your choices are saved." in saved


def test_preferences_never_resubscribe_a_suppressed_address(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    sid = _member(store_engine)
    subscribers.unsubscribe(store_engine, sid, "members")
    subscribers.suppress(store_engine, "person0@example.org", reason="complained")
    client = web_app(web_project(make_project), store_engine).test_client()
    url = "/preferences/" + subscriber_token("preferences", sid, "person0@example.org")
    html = page(client, url)
    client.post(url, data={"csrf_token": csrf(html), "language": "en", "lists": ["members"]})
    assert subscribers.memberships_of(store_engine, sid) == {"members": "unsubscribed"}


def test_preference_token_cannot_unsubscribe_and_vice_versa(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    sid = _member(store_engine)
    client = web_app(web_project(make_project), store_engine).test_client()
    unsubscribe_token = subscriber_token("unsubscribe", sid, "person0@example.org")
    assert client.get(f"/preferences/{unsubscribe_token}").status_code == 400
