"""Bounce and complaint webhooks of email providers, under /hooks/.

- POST /hooks/ses: Amazon SES through an SNS HTTPS subscription (SCHEDULER_SNS_TOPICS)
- POST /hooks/postmark: Postmark bounce and spam complaint webhooks
  (SCHEDULER_POSTMARK_WEBHOOK_AUTH)
- POST /hooks/mailgun: Mailgun webhooks (SCHEDULER_MAILGUN_SIGNING_KEY)
- POST /hooks/sendgrid: SendGrid's signed event webhook (SCHEDULER_SENDGRID_VERIFICATION_KEY)

A hook whose setting is unset answers 404: nothing is accepted unauthenticated. A request
that is unsigned or badly signed gets 403 and changes nothing. Each event is applied once
(`listhealth.events`): a provider's retry of a request we already took is answered 200 and
changes nothing, so providers stop retrying.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, abort, current_app, request
from werkzeug.wrappers import Response

from scheduler import settings
from scheduler.errors import BadSignature
from scheduler.listhealth import events, providers, sns
from scheduler.listhealth.events import Report
from scheduler.web.pages import web_state

log = logging.getLogger(__name__)

blueprint = Blueprint("hooks", __name__, url_prefix="/hooks")

CERTIFICATES = "scheduler_sns_certificates"
# Providers batch events (SendGrid up to a few thousand per request).
MAX_BODY = 5 * 1024 * 1024


def _certificates() -> sns.CertificateCache:
    cache = current_app.extensions.get(CERTIFICATES)
    if cache is None:
        cache = current_app.extensions[CERTIFICATES] = sns.CertificateCache()
    assert isinstance(cache, sns.CertificateCache)
    return cache


def _body() -> bytes:
    request.max_content_length = MAX_BODY
    return request.get_data(cache=True)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        abort(400)


def _refused(error: BadSignature) -> Response:
    log.warning("webhook %s refused: %s", request.path, error)
    return Response("refused: bad or missing signature\n", 403, mimetype="text/plain")


def _apply(reports: list[Report]) -> Response:
    state = web_state()
    policy = events.Policy.of(state.config)
    new = 0
    for report in reports:
        if not report.event_key:
            continue  # without an id an event cannot be applied only once
        new += events.apply(state.engine, state.config, report, policy=policy).new
    return Response(
        json.dumps({"events": len(reports), "applied": new}) + "\n",
        200,
        mimetype="application/json",
    )


@blueprint.post("/ses")
def ses() -> Response:
    if not sns.allowed_topics():
        abort(404)
    message = _json(_body())
    if not isinstance(message, dict):
        abort(400)
    try:
        sns.verify(message, _certificates())
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            sns.confirm_subscription(message)
            log.info("confirmed the SNS subscription to %s", message.get("TopicArn"))
            return Response("subscription confirmed\n", 200, mimetype="text/plain")
        if kind != "Notification":
            return Response("ok\n", 200, mimetype="text/plain")
    except BadSignature as e:
        return _refused(e)
    notification = _json(str(message.get("Message", "")).encode())
    if not isinstance(notification, dict):
        abort(400)
    return _apply(providers.ses_reports(str(message["MessageId"]), notification))


@blueprint.post("/postmark")
def postmark() -> Response:
    expected = settings.POSTMARK_WEBHOOK_AUTH.get()
    if not expected:
        abort(404)
    try:
        providers.check_basic_auth(request.headers.get("Authorization"), expected)
    except BadSignature as e:
        return _refused(e)
    event = _json(_body())
    if not isinstance(event, dict):
        abort(400)
    return _apply(providers.postmark_reports(event))


@blueprint.post("/mailgun")
def mailgun() -> Response:
    key = settings.MAILGUN_SIGNING_KEY.get()
    if not key:
        abort(404)
    payload = _json(_body())
    if not isinstance(payload, dict):
        abort(400)
    try:
        providers.check_mailgun(payload.get("signature") or {}, key)
    except BadSignature as e:
        return _refused(e)
    data = payload.get("event-data")
    if not isinstance(data, dict):
        abort(400)
    return _apply(providers.mailgun_reports(data))


@blueprint.post("/sendgrid")
def sendgrid() -> Response:
    key = settings.SENDGRID_VERIFICATION_KEY.get()
    if not key:
        abort(404)
    body = _body()
    try:
        providers.check_sendgrid(
            body,
            request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
            request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
            key,
        )
    except BadSignature as e:
        return _refused(e)
    batch = _json(body)
    if not isinstance(batch, list):
        abort(400)
    return _apply(providers.sendgrid_reports(batch))
