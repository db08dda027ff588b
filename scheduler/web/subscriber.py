"""Pages reached from the links in every email: unsubscribe (RFC 8058) and preferences.

Both links are HMAC-signed for one purpose, name the subscriber by id *and* address, and act
only while that id still has that address. Changes are written at once; the sender re-reads
memberships before every batch, so a batch not yet sent skips the address.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response

from scheduler.store import subscribers
from scheduler.store.schema import MembershipStatus
from scheduler.tokens import BadToken, sign
from scheduler.web import links, memberships
from scheduler.web.csrf import require_csrf
from scheduler.web.pages import masked_address, message_page, render_page, use_language, web_state
from scheduler.web.signup import list_title

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


def _titles(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(list_title(n) for n in names)


@blueprint.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> tuple[str, int]:
    found = _person(links.UNSUBSCRIBE, token)
    if found is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    link, who = found
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
    use_language(who.language)
    engine = web_state().engine
    for list_name in link.lists:
        subscribers.unsubscribe(engine, who.id, list_name)
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
    use_language(who.language)
    shown = _shown_lists(link, who)
    return render_page(
        "preferences.html",
        token=token,
        email=masked_address(who.email),
        language=who.language,
        languages=web_state().config.organization.languages,
        lists=[(n, list_title(n), who.memberships.get(n) == "active") for n in shown],
        suppressed=who.suppressed,
        saved=request.args.get("saved") == "1",
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
    if language not in state.config.organization.languages:
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
