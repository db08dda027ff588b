"""Pages reached from the links in every email: unsubscribe (RFC 8058) and preferences.

Both links are HMAC-signed for one purpose, name the subscriber by id *and* address, and act
only while that id still has that address. Changes are written at once; the sender re-reads
memberships before every batch, so a batch not yet sent skips the address.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response

from scheduler.listhealth import events, privacy
from scheduler.store import subscribers
from scheduler.store.schema import HealthKind, MembershipStatus
from scheduler.tokens import BadToken, sign
from scheduler.web import links, memberships
from scheduler.web.csrf import require_csrf
from scheduler.web.pages import (
    masked_address,
    message_page,
    page_voice,
    render_page,
    use_chapter,
    use_language,
    web_state,
)
from scheduler.web.signup import list_chapter, list_title

blueprint = Blueprint("subscriber", __name__)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
# Lists a person cannot switch back on from here: the mail system's word, not theirs.
_LOCKED = {MembershipStatus.BOUNCED.value, MembershipStatus.COMPLAINED.value}


def _person(purpose: str, token: str) -> tuple[links.SubscriberLink, memberships.Person] | None:
    state = web_state()
    try:
        link = links.read_subscriber_token(purpose, token, state.key)
    except BadToken:
        return None
    who = memberships.person(state.engine, link.subscriber_id, link.email)
    return None if who is None else (link, who)


def _speak_for(link: links.SubscriberLink) -> None:
    """The page speaks for whoever sent the email: the chapter owning the link's list."""
    first = link.lists[0] if link.lists else None
    use_chapter(list_chapter(first) if first else None)


def _titles(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(list_title(n) for n in names)


@blueprint.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> tuple[str, int]:
    found = _person(links.UNSUBSCRIBE, token)
    if found is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    link, who = found
    _speak_for(link)
    use_language(who.language)
    return render_page(
        "unsubscribe.html",
        token=token,
        lists=_titles(link.lists),
        email=masked_address(who.email),
    )


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> tuple[str, int]:
    # RFC 8058: a mail client POSTs `List-Unsubscribe=One-Click` without cookies and expects
    # the unsubscribe done by a 200, with no redirect. The page's own button carries a CSRF
    # token instead. Nothing here reads or writes the session on the one-click path.
    if request.form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
        require_csrf()
    found = _person(links.UNSUBSCRIBE, token)
    if found is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    link, who = found
    _speak_for(link)
    use_language(who.language)
    state = web_state()
    for list_name in link.lists:
        subscribers.unsubscribe(state.engine, who.id, list_name)
    # Counted once per link (a mail client may POST it again), with the mailing it came in.
    events.apply(
        state.engine,
        state.config,
        events.Report(
            source="web",
            event_key="link:" + hashlib.sha256(token.encode()).hexdigest(),
            kind=HealthKind.UNSUBSCRIBE,
            subscriber_id=who.id,
            occurrence_id=link.occurrence,
            lists=link.lists,
            detail="one-click" if request.form.get(ONE_CLICK_FIELD) else "page",
        ),
    )
    return render_page(
        "unsubscribed.html",
        lists=_titles(link.lists),
        preferences=url_for("subscriber.preferences_page", token=_preferences_token(link)),
    )


def _preferences_token(link: links.SubscriberLink) -> str:
    data = {"s": link.subscriber_id, "e": link.email, "l": ",".join(link.lists)}
    return sign(links.PREFERENCES, data, web_state().key)


def _shown_lists(link: links.SubscriberLink, who: memberships.Person) -> list[str]:
    """The lists the page offers: public ones, the ones the link names, the ones the person
    is on; never one that bounced or was reported, nor one campaigns.yaml no longer has."""
    config = web_state().config
    names = [n for n, lst in config.lists.items() if lst.public]
    names += list(link.lists) + list(who.memberships)
    return [
        n
        for n in dict.fromkeys(names)
        if n in config.lists and who.memberships.get(n) not in _LOCKED
    ]


@blueprint.get("/preferences/<token>")
def preferences_page(token: str) -> tuple[str, int]:
    found = _person(links.PREFERENCES, token)
    if found is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    link, who = found
    _speak_for(link)
    use_language(who.language)
    shown = _shown_lists(link, who)
    return render_page(
        "preferences.html",
        token=token,
        email=masked_address(who.email),
        language=who.language,
        # The speaker's languages, and the person's own even if it offers it no longer.
        languages=list(dict.fromkeys([*page_voice().languages, who.language])),
        lists=[(n, list_title(n), who.memberships.get(n) == "active") for n in shown],
        suppressed=who.suppressed,
        saved=request.args.get("saved") == "1",
        forget_error=request.args.get("forget") == "unconfirmed",
    )


@blueprint.post("/preferences/<token>")
def preferences(token: str) -> Response | tuple[str, int]:
    require_csrf()
    found = _person(links.PREFERENCES, token)
    if found is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    link, who = found
    state = web_state()
    language = request.form.get("language", who.language)
    if language not in state.config.all_languages:
        language = who.language
    shown = set(_shown_lists(link, who))
    memberships.update_preferences(
        state.engine,
        who,
        language=language,
        wanted=set(request.form.getlist("lists")),
        shown=shown,
    )
    # Post/redirect/get: reloading the page does not send the form again.
    return redirect(url_for("subscriber.preferences_page", token=token, saved=1), code=303)


@blueprint.post("/preferences/<token>/forget")
def forget(token: str) -> Response | tuple[str, int]:
    """The right to erasure, from the person's own link: everything goes but a keyed hash
    of the address (scheduler/listhealth/privacy.py)."""
    require_csrf()
    found = _person(links.PREFERENCES, token)
    if found is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    _link, who = found
    use_language(who.language)
    if request.form.get("confirm") != "yes":
        url = url_for("subscriber.preferences_page", token=token, forget="unconfirmed")
        return redirect(url, code=303)
    privacy.forget(web_state().engine, who.email)
    return message_page("forgotten_title", "forgotten_body", 200)
