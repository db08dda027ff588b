"""HTTP for the posting channels: one `requests.Session` per channel, a timeout on every call,
and every failure turned into a transient or permanent send error that names no secret.

A request's URL can hold a credential (a Telegram bot token, a Discord or Slack webhook URL),
so nothing here ever puts a URL, a `requests` exception text or a header into a message: the
caller names what it was doing (`what`), and any text taken from a response is scrubbed of
the channel's resolved secrets before it is shown.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from scheduler.errors import PermanentSendError, TransientSendError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

# (connect, read) seconds. A read timeout means the platform may have accepted the request.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
USER_AGENT = "campaign-scheduler/0.1 (+https://github.com/)"
_DETAIL_CHARS = 200

# 408 and 425 mean "try again"; 429 is a rate limit; every 5xx may pass.
_TRANSIENT_4XX = frozenset({408, 425, 429})


# The names the posting code grew up with; the errors themselves live in scheduler.errors.
TransientPostError = TransientSendError
PermanentPostError = PermanentSendError


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def retry_after(response: requests.Response, now: dt.datetime | None = None) -> float | None:
    """Seconds the platform asks us to wait: `Retry-After` (seconds or HTTP date), a JSON
    `retry_after` (Discord) or `parameters.retry_after` (Telegram), or a rate-limit reset
    time (`RateLimit-Reset` epoch seconds on Bluesky, `X-RateLimit-Reset` ISO time on
    Mastodon)."""
    now = now or dt.datetime.now(dt.UTC)
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            when = email.utils.parsedate_to_datetime(header) if header else None
            if when is not None:
                return max(0.0, (when - now).total_seconds())
    body = _json(response)
    if isinstance(body, dict):
        for holder in (body, body.get("parameters")):
            if isinstance(holder, dict) and isinstance(holder.get("retry_after"), int | float):
                return max(0.0, float(holder["retry_after"]))
    for name in ("RateLimit-Reset", "X-RateLimit-Reset"):
        value = response.headers.get(name)
        if not value:
            continue
        try:
            number = float(value)
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return max(0.0, (when - now).total_seconds())
        # An epoch time, or (some servers) seconds from now.
        return max(0.0, number - now.timestamp()) if number > 1e9 else max(0.0, number)
    return None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def detail(response: requests.Response, secrets: Iterable[str] = ()) -> str:
    """A short, secret-free account of an error response's body."""
    body = _json(response)
    text = ""
    if isinstance(body, dict):
        parts = [
            str(body[k])
            for k in ("error", "message", "description", "error_description")
            if body.get(k) not in (None, "")
        ]
        text = ": ".join(dict.fromkeys(parts))
        if not text:
            text = json.dumps(body, ensure_ascii=False)
    elif response.text:
        text = response.text.strip()
    text = " ".join(text.split())[:_DETAIL_CHARS]
    return scrub(text, secrets)


class HttpClient:
    """One session per channel; every call has a timeout and raises only send errors."""

    def __init__(
        self,
        what: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        secrets: Iterable[str] = (),
    ) -> None:
        self.what = what  # e.g. "mastodon channel 'fedi'": the subject of every message
        self.timeout = timeout
        self.secrets = list(secrets)
        # Imported here, not with the module: every command imports the channels, and
        # requests (with urllib3) costs each a tenth of a second; an SMTP send never needs it.
        import requests

        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def request(
        self,
        method: str,
        url: str,
        *,
        action: str,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> requests.Response:
        """Send one request; a connection failure or timeout raises TransientPostError.

        The response is returned whatever its status: the caller classifies it (`check`),
        because some platforms answer an expected condition with an error status.
        `form` and `files` make a multipart/form-data body (files: field -> (file name,
        bytes, content type)).
        """
        import requests  # loaded by __init__ already: a dictionary look-up

        try:
            return self.session.request(
                method,
                url,
                json=json_body,
                data=data if form is None else dict(form),
                files=None if files is None else dict(files),
                headers=dict(headers or {}),
                params=dict(params or {}),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.ConnectTimeout:
            raise TransientPostError(
                f"{self.what}: {action}: could not connect within {self.timeout[0]:g}s",
                unreachable=True,
            ) from None
        except requests.ReadTimeout:
            raise TransientPostError(
                f"{self.what}: {action}: no answer within {self.timeout[1]:g}s "
                "(the platform may have taken it)",
                maybe_accepted=True,
            ) from None
        except requests.ConnectionError as e:
            # Refused before sending, or dropped after: we cannot tell, so assume it arrived.
            raise TransientPostError(
                f"{self.what}: {action}: connection failed ({type(e).__name__})",
                maybe_accepted=True,
                unreachable=True,
            ) from None
        except requests.RequestException as e:
            raise PermanentPostError(
                f"{self.what}: {action}: the request could not be made ({type(e).__name__})"
            ) from None

    def check(
        self,
        response: requests.Response,
        *,
        action: str,
        hints: Mapping[int, str] | None = None,
    ) -> requests.Response:
        """Return a 2xx response; raise TransientPostError (429, 408, 5xx) or
        PermanentPostError (any other status, including 3xx: a moved endpoint)."""
        status = response.status_code
        if 200 <= status < 300:
            return response
        said = detail(response, self.secrets)
        message = f"{self.what}: {action}: HTTP {status}" + (f" {said}" if said else "")
        if status in _TRANSIENT_4XX or status >= 500:
            wait = retry_after(response)
            if wait is not None:
                message += f" (asked to wait {wait:g}s)"
            raise TransientPostError(
                message, retry_after=wait, status=status, unreachable=status in (502, 504)
            )
        hint = (hints or {}).get(status) or _GENERIC_HINTS.get(status)
        if hint:
            message += f"; {hint}"
        raise PermanentPostError(message, status=status)

    def close(self) -> None:
        self.session.close()


_GENERIC_HINTS = {
    401: "the credential was refused: check the environment variable it comes from",
    403: "the account may not post here: check its permissions",
    404: "the endpoint or target does not exist: check the channel settings",
    410: "the target is gone: remove or replace this channel",
    413: "the post is too large for the platform",
    422: "the platform rejected the post's content",
}
