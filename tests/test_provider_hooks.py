"""Provider webhooks with their real signature formats: Amazon SES through SNS (signature
checked against a local test certificate served over HTTPS), Postmark, Mailgun, SendGrid."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectFactory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from dovecot_server import self_signed
from flask.testing import FlaskClient
from listhealth_helpers import Sent, health_project, send_may_day
from pytest_httpserver import HTTPServer
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine
from web_helpers import web_app

from scheduler.listhealth import sns
from scheduler.store.subscribers import is_suppressed, memberships_of

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"


def person(i: int) -> str:
    return f"person{i}@example.org"


@pytest.fixture
def sent(
    make_project: ProjectFactory, store_engine: Engine, smtp_server: SmtpTestServer
) -> tuple[Any, dict[str, Sent]]:
    project = health_project(make_project, smtp_server.url)
    return project, send_may_day(project, store_engine, smtp_server, n=4)


@pytest.fixture
def client(sent: tuple[Any, dict[str, Sent]], store_engine: Engine) -> FlaskClient:
    return web_app(sent[0], store_engine).test_client()


# --- Amazon SES through SNS ------------------------------------------------------------------


class FakeSns:
    """Signs messages the way SNS does, with a certificate served over local HTTPS."""

    def __init__(self, server: HTTPServer, key: rsa.RSAPrivateKey, cert: x509.Certificate):
        self.server = server
        self.key = key
        self.cert_url = server.url_for("/SimpleNotificationService-test.pem")
        server.expect_request("/SimpleNotificationService-test.pem").respond_with_data(
            cert.public_bytes(serialization.Encoding.PEM), content_type="application/x-pem-file"
        )

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": self.cert_url}
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(sns.string_to_sign(message), padding.PKCS1v15(), digest)
        message["Signature"] = base64.b64encode(signature).decode()
        return message

    def notification(self, message_id: str, body: dict[str, Any], version: str = "2") -> Any:
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": TOPIC,
                "Message": json.dumps(body),
                "Timestamp": "2030-05-01T05:01:12.000Z",
                "UnsubscribeURL": self.server.url_for("/unsubscribe"),
            },
            version,
        )


def _signing_certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
def fake_sns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSns]:
    tls_cert, tls_key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_cert, tls_key)
    server = HTTPServer(host="127.0.0.1", ssl_context=context)
    server.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_cert))
    monkeypatch.setenv("SCHEDULER_SNS_CERT_HOSTS", r"127\.0\.0\.1")
    monkeypatch.setenv("SCHEDULER_SNS_TOPICS", TOPIC)
    key, cert = _signing_certificate()
    try:
        yield FakeSns(server, key, cert)
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def ses_bounce(sent: Sent, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": sent.recipient, "status": "5.1.1", "action": "failed"}
            ],
            "timestamp": "2030-05-01T05:01:12.000Z",
            "feedbackId": "0100018f-bounce",
        },
        "mail": {
            "messageId": "0100018f-ses-id",
            "source": "news@example.org",
            "destination": [sent.recipient],
            "commonHeaders": {"messageId": sent.message_id, "subject": "May Day"},
        },
    }


def test_ses_bounce_and_complaint_through_signed_sns(
    sent: tuple[Any, dict[str, Sent]],
    client: FlaskClient,
    fake_sns: FakeSns,
    store_engine: Engine,
) -> None:
    _project, by_rcpt = sent
    bounce = fake_sns.notification("sns-1", ses_bounce(by_rcpt[person(0)]))
    response = client.post("/hooks/ses", data=json.dumps(bounce))
    assert response.status_code == 200, response.data
    assert response.json == {"events": 1, "applied": 1}
    assert memberships_of(store_engine, person(0)) == {"members": "bounced"}
    # SNS retries a delivery it thinks failed: the same MessageId changes nothing.
    again = client.post("/hooks/ses", data=json.dumps(bounce))
    assert again.status_code == 200 and again.json == {"events": 1, "applied": 0}

    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": person(1)}],
            "complaintFeedbackType": "abuse",
            "feedbackId": "0100018f-complaint",
        },
        "mail": {"commonHeaders": {"messageId": by_rcpt[person(1)].message_id}},
    }
    # SignatureVersion 1 (SHA-1) is still what SNS uses by default.
    response = client.post(
        "/hooks/ses", data=json.dumps(fake_sns.notification("sns-2", complaint, version="1"))
    )
    assert response.status_code == 200, response.data
    assert memberships_of(store_engine, person(1)) == {"members": "complained"}
    assert is_suppressed(store_engine, person(1))


def test_ses_refuses_unsigned_tampered_and_foreign_messages(
    sent: tuple[Any, dict[str, Sent]],
    client: FlaskClient,
    fake_sns: FakeSns,
    store_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _project, by_rcpt = sent
    good = fake_sns.notification("sns-3", ses_bounce(by_rcpt[person(2)]))

    tampered = dict(good)
    tampered["Message"] = json.dumps(ses_bounce(by_rcpt[person(3)]))
    unsigned = {k: v for k, v in good.items() if k != "Signature"}
    foreign_topic = dict(good, TopicArn="arn:aws:sns:eu-west-1:999999999999:theirs")
    http_cert = dict(good, SigningCertURL=good["SigningCertURL"].replace("https:", "http:"))
    other_host = dict(good, SigningCertURL="https://sns.example.org/cert.pem")
    for bad in (tampered, unsigned, foreign_topic, http_cert, other_host):
        response = client.post("/hooks/ses", data=json.dumps(bad))
        assert response.status_code == 403, bad
    assert memberships_of(store_engine, person(2)) == {"members": "active"}
    assert memberships_of(store_engine, person(3)) == {"members": "active"}

    # Another key signing for the same certificate URL is refused too.
    other_key, _ = _signing_certificate()
    forged = FakeSns.__new__(FakeSns)
    forged.server, forged.key, forged.cert_url = fake_sns.server, other_key, fake_sns.cert_url
    response = client.post(
        "/hooks/ses", data=json.dumps(forged.notification("sns-4", ses_bounce(by_rcpt[person(2)])))
    )
    assert response.status_code == 403
    assert memberships_of(store_engine, person(2)) == {"members": "active"}

    # In production only https certificates on SNS's own hosts are fetched.
    monkeypatch.delenv("SCHEDULER_SNS_CERT_HOSTS")
    assert not sns.allowed_url(good["SigningCertURL"])
    assert sns.allowed_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem")
    assert not sns.allowed_url("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem")
    assert not sns.allowed_url("https://user@sns.eu-west-1.amazonaws.com/x.pem")


def test_sns_subscription_is_confirmed(
    client: FlaskClient, fake_sns: FakeSns, store_engine: Engine
) -> None:
    fake_sns.server.expect_oneshot_request("/confirm", query_string="Token=abc").respond_with_data(
        "<ConfirmSubscriptionResponse/>"
    )
    message = fake_sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "sns-sub",
            "Token": "abc",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": fake_sns.server.url_for("/confirm") + "?Token=abc",
            "Timestamp": "2030-05-01T05:00:00.000Z",
        }
    )
    response = client.post("/hooks/ses", data=json.dumps(message))
    assert response.status_code == 200, response.data
    fake_sns.server.check_assertions()
    assert any(r.path == "/confirm" for r, _ in fake_sns.server.log)


def test_hooks_without_their_setting_accept_nothing(client: FlaskClient) -> None:
    for path in ("/hooks/ses", "/hooks/postmark", "/hooks/mailgun", "/hooks/sendgrid"):
        assert client.post(path, data="{}").status_code == 404


# --- Postmark ---------------------------------------------------------------------------------


def test_postmark_bounce_with_basic_auth(
    sent: tuple[Any, dict[str, Sent]],
    client: FlaskClient,
    store_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULER_POSTMARK_WEBHOOK_AUTH", "postmark:hook-secret")
    event = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Email": person(0),
        "BouncedAt": "2030-05-01T05:01:12Z",
        "Inactive": True,
        "MessageStream": "outbound",
    }
    wrong = base64.b64encode(b"postmark:guess").decode()
    assert client.post("/hooks/postmark", json=event).status_code == 403
    response = client.post(
        "/hooks/postmark", json=event, headers={"Authorization": f"Basic {wrong}"}
    )
    assert response.status_code == 403
    assert memberships_of(store_engine, person(0)) == {"members": "active"}
    right = base64.b64encode(b"postmark:hook-secret").decode()
    response = client.post(
        "/hooks/postmark", json=event, headers={"Authorization": f"Basic {right}"}
    )
    assert response.status_code == 200 and response.json == {"events": 1, "applied": 1}
    assert memberships_of(store_engine, person(0)) == {"members": "bounced"}
    complaint = dict(event, RecordType="SpamComplaint", Type="SpamComplaint", Email=person(1))
    client.post("/hooks/postmark", json=complaint, headers={"Authorization": f"Basic {right}"})
    assert memberships_of(store_engine, person(1)) == {"members": "complained"}


# --- Mailgun ----------------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def mailgun_payload(event_data: dict[str, Any], key: str = MAILGUN_KEY) -> dict[str, Any]:
    timestamp, token = "1903993672", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": event_data,
    }


def test_mailgun_events_with_hmac(
    sent: tuple[Any, dict[str, Sent]],
    client: FlaskClient,
    store_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULER_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    _project, by_rcpt = sent
    failed = {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": person(0),
        "message": {"headers": {"message-id": by_rcpt[person(0)].message_id.strip("<>")}},
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
    }
    forged = mailgun_payload(failed, key="key-not-ours")
    assert client.post("/hooks/mailgun", json=forged).status_code == 403
    unsigned = {"event-data": failed}
    assert client.post("/hooks/mailgun", json=unsigned).status_code == 403
    assert memberships_of(store_engine, person(0)) == {"members": "active"}

    response = client.post("/hooks/mailgun", json=mailgun_payload(failed))
    assert response.status_code == 200 and response.json == {"events": 1, "applied": 1}
    assert memberships_of(store_engine, person(0)) == {"members": "bounced"}
    assert client.post("/hooks/mailgun", json=mailgun_payload(failed)).json["applied"] == 0

    # An unsubscribe names our Message-ID: the occurrence's lists are the ones left.
    unsub = {
        "id": "Ase7i2zsRYeDXztHGENqRA",
        "event": "unsubscribed",
        "recipient": person(1),
        "message": {"headers": {"message-id": by_rcpt[person(1)].message_id.strip("<>")}},
    }
    client.post("/hooks/mailgun", json=mailgun_payload(unsub))
    assert memberships_of(store_engine, person(1)) == {"members": "unsubscribed"}


# --- SendGrid ---------------------------------------------------------------------------------


def test_sendgrid_signed_event_webhook(
    sent: tuple[Any, dict[str, Sent]],
    client: FlaskClient,
    store_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv("SCHEDULER_SENDGRID_VERIFICATION_KEY", base64.b64encode(public_der).decode())
    batch = [
        {
            "email": person(0),
            "timestamp": 1903993672,
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "sg_event_id": "ZGVmZXJyZWQtMC0xMjM0NTY3ODk",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        },
        {
            "email": person(1),
            "timestamp": 1903993673,
            "event": "spamreport",
            "sg_event_id": "c3BhbXJlcG9ydC0wLTEyMzQ1Njc4OQ",
        },
        {"email": person(2), "event": "deferred", "sg_event_id": "ZGVmZXJyZWQtMTIz"},
        {"email": person(3), "event": "delivered", "sg_event_id": "ZGVsaXZlcmVkLTEyMw"},
    ]
    body = json.dumps(batch).encode()
    timestamp = "1903993680"

    def headers(signature: bytes) -> dict[str, str]:
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }

    good = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    other = ec.generate_private_key(ec.SECP256R1())
    bad = other.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    assert client.post("/hooks/sendgrid", data=body, headers=headers(bad)).status_code == 403
    changed = body.replace(b"spamreport", b"delivered!")
    response = client.post("/hooks/sendgrid", data=changed, headers=headers(good))
    assert response.status_code == 403
    assert client.post("/hooks/sendgrid", data=body).status_code == 403  # unsigned

    response = client.post("/hooks/sendgrid", data=body, headers=headers(good))
    assert response.status_code == 200 and response.json == {"events": 4, "applied": 4}
    assert memberships_of(store_engine, person(0)) == {"members": "bounced"}
    assert memberships_of(store_engine, person(1)) == {"members": "complained"}
    # A delay is not a bounce; a delivery is nothing to act on.
    assert memberships_of(store_engine, person(2)) == {"members": "active"}
    assert memberships_of(store_engine, person(3)) == {"members": "active"}
    again = client.post("/hooks/sendgrid", data=body, headers=headers(good))
    assert again.json == {"events": 4, "applied": 0}
