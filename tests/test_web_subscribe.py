"""Joining a list from the web: double opt-in through the SMTP channel, no enumeration,
rate limits, CSRF, and what a confirmation may and may not undo."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import ProjectFactory
from sqlalchemy.engine import Engine
from web_helpers import (
    confirmation_path,
    csrf,
    letters,
    page,
    subscribe,
    text_of,
    web_app,
    web_project,
)

from scheduler.audience.csvfile import SubscriberRow
from scheduler.store import subscribers
from scheduler.web import Limit, Limits


def test_index_lists_public_lists_only(make_project: ProjectFactory, store_engine: Engine) -> None:
    client = web_app(web_project(make_project), store_engine).test_client()
    html = page(client, "/subscribe")
    assert "Members and supporters" in html and "Quick news" in html
    assert "Press and allies" not in html
    assert client.get("/subscribe/press").status_code == 404  # not public
    assert client.get("/subscribe/nope").status_code == 404


def test_form_is_accessible(make_project: ProjectFactory, store_engine: Engine) -> None:
    client = web_app(web_project(make_project), store_engine).test_client()
    html = page(client, "/subscribe/members")
    assert '<html lang="en">' in html
    for field in ("email", "name", "language"):
        assert f'<label for="{field}">' in html and f'id="{field}"' in html
    assert "<script" not in html
    assert csrf(html)


def test_double_opt_in(make_project: ProjectFactory, store_engine: Engine) -> None:
    project = web_project(make_project)
    client = web_app(project, store_engine).test_client()
    response = subscribe(client, "Ana@Example.org", name="Ana Pérez", language="es")
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    # Nothing is stored before the owner of the address follows the link.
    assert subscribers.subscriber(store_engine, "ana@example.org") is None

    (message,) = letters(project)
    assert message["To"].addresses[0].addr_spec == "Ana@example.org"
    assert message["Subject"] == "Confirma tu suscripción a Members and supporters"
    assert message["Content-Language"] == "es"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["From"].addresses[0].addr_spec == "news@example.org"
    assert message["Message-ID"] and message["Date"]
    assert "List-Unsubscribe" not in message  # a transactional message, not a list message
    assert text_of(message).startswith("Hola, Ana Pérez:")

    path = confirmation_path(message)
    assert path.startswith("/confirm/")
    confirm_page = page(client, path)
    assert '<html lang="es">' in confirm_page
    assert "Ana@example.org" not in confirm_page  # masked: A•••@example.org
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {}  # GET changes nothing

    done = client.post(path, data={"csrf_token": csrf(confirm_page)})
    assert done.status_code == 200
    assert "Suscripción confirmada" in done.get_data(as_text=True)
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {"members": "active"}
    stored = subscribers.subscriber(store_engine, "ana@example.org")
    assert stored is not None
    assert (stored["name"], stored["language"]) == ("Ana Pérez", "es")

    again = client.post(path, data={"csrf_token": csrf(confirm_page)})
    assert "already subscribed" in again.get_data(as_text=True) or "ya estaba" in again.get_data(
        as_text=True
    )


def test_same_answer_whatever_the_address(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    subscribers.import_rows(
        store_engine,
        "members",
        [SubscriberRow(email="old@example.org", language="en", row=2)],
        source="t",
    )
    subscribers.suppress(store_engine, "gone@example.org", reason="bounced")
    client = web_app(project, store_engine).test_client()
    answers = {
        address: subscribe(client, address)
        for address in ("new@example.org", "old@example.org", "gone@example.org")
    }
    bodies = {a: (r.status_code, r.get_data(as_text=True)) for a, r in answers.items()}
    assert len(set(bodies.values())) == 1, "the answer tells one address from another"
    # The suppressed address gets nothing; the others a confirmation.
    sent_to = sorted(m["To"].addresses[0].addr_spec for m in letters(project))
    assert sent_to == ["new@example.org", "old@example.org"]


def test_invalid_address_is_refused_with_a_labelled_error(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    client = web_app(project, store_engine).test_client()
    response = subscribe(client, "not an address")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'role="alert"' in html and 'aria-invalid="true"' in html
    assert letters(project) == []


def test_rate_limit_per_address_stops_inbox_bombing(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    limits = Limits(signup_per_address=Limit(2, 3600), signup_per_ip=Limit(100, 3600))
    client = web_app(project, store_engine, limits=limits).test_client()
    answers = set()
    for n in range(6):  # from six different addresses of the attacker
        response = subscribe(client, "victim@example.org", ip=f"203.0.113.{n}")
        answers.add((response.status_code, response.get_data(as_text=True)))
    assert len(answers) == 1  # the same answer: the limit reveals nothing either
    assert len(letters(project)) == 2


def test_rate_limit_per_ip(make_project: ProjectFactory, store_engine: Engine) -> None:
    project = web_project(make_project)
    limits = Limits(signup_per_ip=Limit(3, 3600))
    client = web_app(project, store_engine, limits=limits).test_client()
    codes = [subscribe(client, f"p{n}@example.org").status_code for n in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert len(letters(project)) == 3
    other = subscribe(client, "x@example.org", ip="198.51.100.7")
    assert other.status_code == 200


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_subscribe_without_csrf_is_400(
    make_project: ProjectFactory, store_engine: Engine, token: str | None
) -> None:
    project = web_project(make_project)
    client = web_app(project, store_engine).test_client()
    page(client, "/subscribe/members")  # a session exists; the form's token is left out
    data = {"email": "ana@example.org", "language": "en"}
    if token is not None:
        data["csrf_token"] = token
    assert client.post("/subscribe/members", data=data).status_code == 400
    assert letters(project) == []


def _confirmation(make_project: ProjectFactory, engine: Engine, **app_args: object) -> tuple:
    project = web_project(make_project)
    app = web_app(project, engine, **app_args)
    client = app.test_client()
    subscribe(client, "ana@example.org")
    path = confirmation_path(letters(project)[-1])
    return client, path


def test_confirm_needs_csrf(make_project: ProjectFactory, store_engine: Engine) -> None:
    client, path = _confirmation(make_project, store_engine)
    assert client.post(path, data={}).status_code == 400
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {}


def test_tampered_or_expired_confirmation_is_refused(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    client, path = _confirmation(make_project, store_engine)
    token = path.removeprefix("/confirm/")
    payload, mac = token.split(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    assert client.get(f"/confirm/{tampered}").status_code == 400
    assert client.get(f"/confirm/{token[:-3]}").status_code == 400

    # Signed now, followed eight days later: expired.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    stale = web_app(web_project(make_project), store_engine, now=lambda: later).test_client()
    assert stale.get(path).status_code == 400
    assert client.get(path).status_code == 200


def test_confirmation_after_unsubscribe(make_project: ProjectFactory, store_engine: Engine) -> None:
    """A person who unsubscribed and asks again is subscribed again by the new link; a link
    from before the unsubscribe cannot undo it."""
    project = web_project(make_project)
    client = web_app(project, store_engine).test_client()
    subscribe(client, "ana@example.org")
    old_path = confirmation_path(letters(project)[-1])
    confirm_page = page(client, old_path)
    client.post(old_path, data={"csrf_token": csrf(confirm_page)})
    assert subscribers.unsubscribe(store_engine, "ana@example.org", "members")

    replay = client.post(old_path, data={"csrf_token": csrf(confirm_page)})
    assert "could not confirm" in replay.get_data(as_text=True)
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {
        "members": "unsubscribed"
    }

    # Asked again: the new link is newer than the unsubscribe (whole seconds in the token).
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    client2 = web_app(project, store_engine, now=lambda: later).test_client()
    subscribe(client2, "ana@example.org")
    new_path = confirmation_path(letters(project)[-1])
    client2.post(new_path, data={"csrf_token": csrf(page(client2, new_path))})
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {"members": "active"}


def test_confirmation_never_undoes_a_bounce(
    make_project: ProjectFactory, store_engine: Engine
) -> None:
    project = web_project(make_project)
    client = web_app(project, store_engine).test_client()
    subscribe(client, "ana@example.org")
    path = confirmation_path(letters(project)[-1])
    subscribers.suppress(store_engine, "ana@example.org", reason="bounced")
    result = client.post(path, data={"csrf_token": csrf(page(client, path))})
    assert "could not confirm" in result.get_data(as_text=True)
    assert subscribers.memberships_of(store_engine, "ana@example.org") == {}
