"""Bounce and complaint events of email providers: checking their signatures and reading
them into `Report`s (scheduler/web/provider_hooks.py receives them).

Signed webhooks may name the person by address: the provider, not the internet, says so.
Where the provider passes our Message-ID on, the report also names the occurrence.

- Amazon SES via SNS: the SNS signature and certificate (sns.py), allowed topics only;
  Bounce and Complaint notifications.
- Postmark: HTTP basic auth in the webhook URL (Postmark signs nothing); Bounce and
  SpamComplaint.
- Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key; failed,
  complained, unsubscribed.
- SendGrid: ECDSA P-256 / SHA-256 over timestamp + raw body (signed event webhook); bounce,
  spamreport, unsubscribe.

Delays (SendGrid `deferred`, Mailgun `temporary` is a failure, not a delay) are not bounces:
the provider keeps trying and reports the end.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from scheduler.errors import BadSignature
from scheduler.listhealth.events import Report
from scheduler.store.schema import HealthKind


def _key(given: object, event: Mapping[str, Any]) -> str:
    """The provider's event id; without one, a hash of the event (a retry sends it again
    unchanged, so it is still applied once)."""
    if isinstance(given, str | int) and str(given):
        return str(given)
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "sha:" + hashlib.sha256(canonical.encode()).hexdigest()


# --- Amazon SES (the Message of an SNS Notification) -----------------------------------------


def _angle(message_id: object) -> str | None:
    if not isinstance(message_id, str) or not message_id.strip():
        return None
    value = message_id.strip()
    return value if value.startswith("<") else f"<{value}>"


def ses_reports(sns_message_id: str, notification: Mapping[str, Any]) -> list[Report]:
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    headers = mail.get("commonHeaders") or {}
    message_id = _angle(headers.get("messageId"))
    reports: list[Report] = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        hard = bounce.get("bounceType") == "Permanent"
        for i, rcpt in enumerate(bounce.get("bouncedRecipients") or []):
            status = str(rcpt.get("status") or bounce.get("bounceSubType") or "")
            reports.append(
                Report(
                    source="ses",
                    event_key=f"{sns_message_id}:{i}",
                    kind=HealthKind.HARD_BOUNCE if hard else HealthKind.SOFT_BOUNCE,
                    email=str(rcpt.get("emailAddress") or "") or None,
                    message_id=message_id,
                    detail=f"ses {bounce.get('bounceType')} {status}".strip(),
                )
            )
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        for i, rcpt in enumerate(complaint.get("complainedRecipients") or []):
            reports.append(
                Report(
                    source="ses",
                    event_key=f"{sns_message_id}:{i}",
                    kind=HealthKind.IGNORED if feedback == "not-spam" else HealthKind.COMPLAINT,
                    email=str(rcpt.get("emailAddress") or "") or None,
                    message_id=message_id,
                    detail=f"ses feedback {feedback}",
                )
            )
    return reports


# --- Postmark ------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SOFT = {"Transient", "SoftBounce", "DnsError", "InboxFull", "Blocked", "DMARCPolicy"}


def check_basic_auth(header: str | None, expected: str) -> None:
    """`Authorization: Basic ...` must carry exactly `expected` ("user:password")."""
    if not header or not header.startswith("Basic "):
        raise BadSignature("no HTTP basic credentials")
    try:
        given = base64.b64decode(header.removeprefix("Basic ").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("malformed HTTP basic credentials") from None
    if not hmac.compare_digest(given, expected.encode()):
        raise BadSignature("wrong HTTP basic credentials")


def postmark_reports(event: Mapping[str, Any]) -> list[Report]:
    record = event.get("RecordType")
    kind_name = str(event.get("Type") or "")
    if record == "SpamComplaint" or kind_name == "SpamComplaint":
        kind = HealthKind.COMPLAINT
    elif record == "Bounce" and kind_name in _POSTMARK_HARD:
        kind = HealthKind.HARD_BOUNCE
    elif record == "Bounce" and kind_name in _POSTMARK_SOFT:
        kind = HealthKind.SOFT_BOUNCE
    else:
        kind = HealthKind.IGNORED
    return [
        Report(
            source="postmark",
            event_key=f"{record}:{_key(event.get('ID'), event)}",
            kind=kind,
            email=str(event.get("Email") or "") or None,
            detail=f"postmark {kind_name}",
        )
    ]


# --- Mailgun -------------------------------------------------------------------------------


def check_mailgun(signature: Mapping[str, Any], signing_key: str) -> None:
    timestamp, token = signature.get("timestamp"), signature.get("token")
    given = signature.get("signature")
    if not all(isinstance(v, str) and v for v in (timestamp, token, given)):
        raise BadSignature("unsigned Mailgun event")
    expected = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, str(given)):
        raise BadSignature("the Mailgun signature does not match")


def mailgun_reports(data: Mapping[str, Any]) -> list[Report]:
    event = data.get("event")
    if event == "failed":
        hard = data.get("severity") == "permanent"
        kind = HealthKind.HARD_BOUNCE if hard else HealthKind.SOFT_BOUNCE
    elif event == "complained":
        kind = HealthKind.COMPLAINT
    elif event == "unsubscribed":
        kind = HealthKind.UNSUBSCRIBE
    else:
        kind = HealthKind.IGNORED
    status = data.get("delivery-status") or {}
    headers = (data.get("message") or {}).get("headers") or {}
    return [
        Report(
            source="mailgun",
            event_key=_key(data.get("id"), data),
            kind=kind,
            email=str(data.get("recipient") or "") or None,
            message_id=_angle(headers.get("message-id")),
            detail=f"mailgun {event} {status.get('code', '')}".strip(),
        )
    ]


# --- SendGrid ------------------------------------------------------------------------------


def check_sendgrid(body: bytes, signature: str | None, timestamp: str | None, key: str) -> None:
    if not signature or not timestamp:
        raise BadSignature("unsigned SendGrid event batch")
    try:
        public_key = serialization.load_der_public_key(base64.b64decode(key))
        der_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise BadSignature("malformed SendGrid signature or verification key") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BadSignature("the SendGrid verification key is not an ECDSA key")
    try:
        public_key.verify(der_signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignature("the SendGrid signature does not match") from None


def sendgrid_reports(events: Sequence[Any]) -> list[Report]:
    reports = []
    for event in events:
        if not isinstance(event, Mapping):
            continue
        name = event.get("event")
        if name == "bounce":
            blocked = event.get("type") == "blocked"
            kind = HealthKind.SOFT_BOUNCE if blocked else HealthKind.HARD_BOUNCE
        elif name == "spamreport":
            kind = HealthKind.COMPLAINT
        elif name == "unsubscribe":
            kind = HealthKind.UNSUBSCRIBE
        else:
            kind = HealthKind.IGNORED
        reports.append(
            Report(
                source="sendgrid",
                event_key=_key(event.get("sg_event_id"), event),
                kind=kind,
                email=str(event.get("email") or "") or None,
                detail=f"sendgrid {name} {event.get('status', '')}".strip(),
            )
        )
    return reports
