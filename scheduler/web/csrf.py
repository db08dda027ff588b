"""CSRF tokens for the forms people fill in: one random token per session, compared in
constant time. The RFC 8058 one-click POST is exempt by design (mail clients send it without
cookies); its signed URL is what protects it."""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"
_SESSION_KEY = "csrf"


def csrf_token() -> str:
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def require_csrf() -> None:
    """Abort with 400 unless the form carries this session's token."""
    expected = session.get(_SESSION_KEY)
    sent = request.form.get(FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(400)
