"""Joining a public list: the form, the confirmation email, and following its link.

Double opt-in without storing anything first: the confirmation link itself carries the
sign-up (signed), so an address someone typed in is not kept anywhere unless its owner
follows the link. The form answers the same whatever the address; a per-address limit keeps
it from being used to flood someone's inbox, a per-IP limit from being scripted.
"""

from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from scheduler.audience.address import address_key, address_problem, normalize_address
from scheduler.config.model import MailingList
from scheduler.delivery.letters import Letter
from scheduler.tokens import BadToken
from scheduler.web import links, memberships
from scheduler.web.csrf import require_csrf
from scheduler.web.pages import (
    client_ip,
    masked_address,
    message_page,
    page_chapter,
    page_voice,
    render_page,
    speaking,
    t,
    use_chapter,
    use_language,
    web_state,
)

blueprint = Blueprint("signup", __name__)

MAX_NAME = 200


def public_lists(chapter: str | None = None) -> dict[str, MailingList]:
    """The lists open to sign-ups on the alliance's page, or on one chapter's."""
    state = web_state()
    if state.mailer is None:
        return {}
    return {
        name: lst
        for name, lst in state.config.lists.items()
        if lst.public and lst.chapter == chapter
    }


def list_title(name: str, language: str | None = None) -> str:
    """The list's name in `language` (the page's when not given)."""
    lst = web_state().config.lists.get(name)
    if lst is None:
        return name
    return lst.title(name, language or str(g.get("lang", "")) or None)


def list_chapter(name: str) -> str | None:
    lst = web_state().config.lists.get(name)
    return lst.chapter if lst is not None else None


def _public_list(name: str, chapter: str | None) -> MailingList:
    found = public_lists(chapter).get(name)
    if found is None:
        abort(404)
    return found


@blueprint.get("/subscribe")
@blueprint.get("/<chapter>/subscribe")
def index(chapter: str | None = None) -> tuple[str, int]:
    lists = public_lists(chapter)
    lang = str(g.get("lang", ""))
    return render_page(
        "subscribe_index.html",
        lists=[(n, lst.title(n, lang), lst.blurb(lang)) for n, lst in lists.items()],
    )


@blueprint.get("/subscribe/<list_name>")
@blueprint.get("/<chapter>/subscribe/<list_name>")
def form(list_name: str, chapter: str | None = None) -> tuple[str, int] | Response:
    owner = list_chapter(list_name)
    if chapter is None and owner is not None and list_name in public_lists(owner):
        # A chapter's list lives on the chapter's page, in the chapter's voice.
        asked = request.args.get("lang")
        return redirect(url_for("signup.form", chapter=owner, list_name=list_name, lang=asked))
    mailing_list = _public_list(list_name, chapter)
    return _form_page(list_name, mailing_list, {"email": "", "name": "", "language": g.lang})


def _form_page(
    list_name: str,
    mailing_list: MailingList,
    values: dict[str, str],
    error: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    lang = str(g.lang)
    return render_page(
        "subscribe.html",
        status,
        list_name=list_name,
        mailing_list=mailing_list,
        title=mailing_list.title(list_name, lang),
        description=mailing_list.blurb(lang),
        # The form posts back with the page's language, so its answer speaks it too.
        action=url_for("signup.submit", chapter=page_chapter(), list_name=list_name, lang=lang),
        languages=page_voice().languages,
        values=values,
        error=error,
    )


@blueprint.post("/subscribe/<list_name>")
@blueprint.post("/<chapter>/subscribe/<list_name>")
def submit(list_name: str, chapter: str | None = None) -> tuple[str, int]:
    state = web_state()
    mailing_list = _public_list(list_name, chapter)
    require_csrf()
    if not state.hits.hit(f"signup-ip:{client_ip()}", state.limits.signup_per_ip):
        abort(429)
    email = normalize_address(request.form.get("email", ""))
    name = " ".join(request.form.get("name", "").split())[:MAX_NAME] or None
    voice = page_voice()
    language = request.form.get("language", "")
    if language not in voice.languages:
        language = voice.default_language
    if address_problem(email) is not None:
        values = {"email": email, "name": name or "", "language": language}
        return _form_page(list_name, mailing_list, values, t("invalid_email"), 400)
    # Counted before anything else is looked at, so the answer below is the same for every
    # address: whether it is new, subscribed, suppressed or over its limit.
    allowed = state.hits.hit(
        f"signup-address:{address_key(email)}", state.limits.signup_per_address
    )
    if allowed and not memberships.is_suppressed(state.engine, email):
        _send_confirmation(
            links.SignUp(
                email=email,
                name=name,
                language=language,
                list_name=list_name,
                requested_at=state.now(),
            )
        )
    return message_page("check_inbox_title", "check_inbox_body", 200, note="check_inbox_spam")


def _send_confirmation(signup: links.SignUp) -> None:
    state = web_state()
    assert state.mailer is not None  # public_lists() is empty without one
    voice = page_voice()
    base = voice.public_url.rstrip("/")
    url = base + url_for("signup.confirm_page", token=links.confirm_token(signup, state.key))
    org = voice.display_name(signup.language)
    list_name = list_title(signup.list_name, signup.language)
    context = {"url": url, "list_title": list_name, "org_name": org, "name": signup.name}
    sender = state.config.senders.get(voice.sender) if voice.sender else None
    # The email speaks the language the person chose, whatever the page was in.
    with speaking(signup.language):
        letter = Letter(
            sender=sender,
            to=signup.email,
            name=signup.name,
            subject=t("email_confirm_subject", list=list_name),
            text=render_template("email/confirm.txt", **context),
            html=render_template("email/confirm.html", **context),
            language=signup.language,
        )
    state.mailer.send(letter)


def _read(token: str) -> links.SignUp | None:
    state = web_state()
    try:
        signup = links.read_confirm_token(token, state.key, now=state.now().timestamp())
    except BadToken:
        return None
    return signup if signup.list_name in state.config.lists else None


@blueprint.get("/confirm/<token>")
def confirm_page(token: str) -> tuple[str, int]:
    # A page with a button, not a change on GET: mail scanners and link previews open links
    # by themselves, and must not subscribe anyone.
    signup = _read(token)
    if signup is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    use_chapter(list_chapter(signup.list_name))
    use_language(signup.language)
    return render_page(
        "confirm.html",
        token=token,
        title=list_title(signup.list_name),
        email=masked_address(signup.email),
    )


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> tuple[str, int]:
    require_csrf()
    signup = _read(token)
    if signup is None:
        return message_page("bad_link_title", "bad_link_body", 400)
    use_chapter(list_chapter(signup.list_name))
    use_language(signup.language)
    state = web_state()
    result = memberships.confirm_subscription(
        state.engine,
        email=signup.email,
        name=signup.name,
        language=signup.language,
        list_name=signup.list_name,
        requested_at=signup.requested_at,
    )
    return render_page("confirmed.html", result=result.value, title=list_title(signup.list_name))
