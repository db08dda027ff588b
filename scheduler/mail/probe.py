"""Ask a mail server what it offers, without sending anything (EHLO, then QUIT)."""

from __future__ import annotations

import contextlib
import smtplib
import ssl

from scheduler.mail.urls import parse_smtp_url


def offers_smtputf8(url: str, *, timeout: float = 10) -> bool | None:
    """Whether the SMTP server at `url` offers SMTPUTF8 (RFC 6531); None when it cannot be
    asked (unreachable, or the URL's secrets are unset). A `file:` outbox takes anything."""
    if url.startswith("file:"):
        return True
    try:
        endpoint = parse_smtp_url(url)
    except Exception:
        return None
    conn: smtplib.SMTP | None = None
    try:
        if endpoint.scheme == "smtps":
            conn = smtplib.SMTP_SSL(
                endpoint.host, endpoint.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)
        conn.ehlo_or_helo_if_needed()
        return bool(conn.has_extn("smtputf8"))
    except (OSError, smtplib.SMTPException):
        return None
    finally:
        if conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.quit()
