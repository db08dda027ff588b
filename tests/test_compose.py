"""MessageFactory (fast composing) against the EmailMessage reference, wire form, injection, DKIM.

The reference is `scheduler.content.message.build_email`, called directly with a RenderedEmail
whose bodies are the factory's bodies with each token replaced by hand (raw in the text,
`html.escape`d in the HTML). Both messages are parsed with `email.policy.default` and their
decoded headers and parts compared.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.header
import email.policy
import email.utils
import html
import random
import re
import shutil
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from scheduler.config.model import Sender
from scheduler.content.message import build_email, domain_of, list_id_for, message_id_for
from scheduler.content.render import Recipient, RenderedEmail
from scheduler.mail.compose import MessageFactory

NAME, UNSUB, PREFS = "ZZRCPT0ZZ7f3a9c", "ZZRCPT1ZZ7f3a9c", "ZZRCPT2ZZ7f3a9c"
TOKENS = [NAME, UNSUB, PREFS]
DATE = dt.datetime(2027, 5, 1, 8, 30, tzinfo=dt.UTC)
LIST = "members"
MAILTO = "unsubscribe@example.org"

TEXT = f"Dear {NAME},\n\nToday we march together.\n\nPreferences: {PREFS}\nUnsubscribe: {UNSUB}\n"
HTML = (
    '<!DOCTYPE html>\n<html><body style="font-family: Arial">\n'
    f"<p>Dear {NAME},</p>\n<p>Today we march together. — ¡Adelante! — 前进</p>\n"
    f'<p><a href="{PREFS}">Preferences</a> · <a href="{UNSUB}">Unsubscribe</a></p>\n'
    "</body></html>\n"
)
LONG_SUBJECT = (
    "International Migrants Day statement: our alliance of migrant workers' organizations, "
    "unions and chapters in many countries calls for equal rights, safe work and dignity "
    "for everyone"
)
LONG_SUBJECT_NON_ASCII = (
    "Déclaration pour la Journée internationale des migrants : notre alliance d'organisations "
    "de travailleurs migrants, de syndicats et de sections réclame l'égalité des droits — ✊"
)
HEADERS = [
    "From",
    "To",
    "Subject",
    "Reply-To",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def content(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    assert part is not None, subtype
    assert part.get_content_type() == f"text/{subtype}"
    text = part.get_content()
    assert isinstance(text, str)
    return text


def substitute(body: str, values: dict[str, str], *, escape: bool) -> str:
    for token, value in values.items():
        body = body.replace(token, html.escape(value, quote=True) if escape else value)
    return body


def make_factory(
    *,
    sender: Sender | None = None,
    subject: str = "May Day 2027",
    text: str = TEXT,
    html_body: str = HTML,
    language: str = "en",
    tokens: list[str] | None = None,
    mailto: str | None = MAILTO,
) -> MessageFactory:
    sender = sender or Sender(name="Migrant Workers Alliance", address="news@example.org")
    return MessageFactory(
        sender=sender,
        subject=subject,
        text=text,
        html=html_body,
        language=language,
        list_id=list_id_for(LIST, domain_of(sender.address)),
        unsubscribe_mailto=mailto,
        date=DATE,
        tokens=TOKENS if tokens is None else tokens,
    )


def recipient_args(
    name: str | None, email_: str = "ana@example.net", key: str = "may-day/2027/1"
) -> dict[str, object]:
    url = f"https://example.org/unsubscribe/{abs(hash((name, key))):x}.sig"
    return {
        "to_email": email_,
        "to_name": name,
        "message_id": message_id_for(key, "example.org"),
        "unsubscribe_url": url,
        "values": {NAME: name or "friend", UNSUB: url, PREFS: url.replace("unsub", "prefs")},
    }


def rfc2047_display_name(raw: bytes, name: str) -> str:
    """The display name of a one-mailbox header, decoded strictly per RFC 2047."""
    values = email.message_from_bytes(raw, policy=email.policy.compat32).get_all(name)
    assert values and len(values) == 1
    display, _ = email.utils.parseaddr(str(values[0]))
    return str(email.header.make_header(email.header.decode_header(display)))


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# --- equivalence with the EmailMessage reference ---------------------------------------------

CASES = [
    ("ascii", "Migrant Workers Alliance", "Ana Lopez", "May Day 2027"),
    ("spanish", "Alianza de Trabajadores Migrantes", "José Ramírez", "¡Feliz Primero de Mayo!"),
    ("vietnamese", "Liên minh Công nhân", "Nguyễn Thị Minh Khai", "Ngày Quốc tế Lao động"),
    ("arabic", "تحالف العمال المهاجرين", "فاطمة الزهراء", "اليوم الدولي للمهاجرين"),
    ("emoji", "Alliance ✊", "Chidi 🌍 Okafor", "We march today 🌹✊🏽"),
    ("long-ascii-subject", "Alliance", "Mary O'Brien", LONG_SUBJECT),
    ("long-non-ascii-subject", "Alliance", "Zoë", LONG_SUBJECT_NON_ASCII),
    ("specials", "Alliance (Chapter 3), Inc.", 'Ana <b>&"', "Re: [alliance] a; b"),
    ("no-name", "Alliance", None, "Hello"),
    ("long-name", "Alliance", "Ñandú " * 30 + "Pérez", "Hello"),
    ("encoded-word-lookalike", "Alliance", "=?utf-8?q?Bcc:_x?=", "=?utf-8?b?QmNj?= hi"),
    ("multiple-spaces", "Alliance  United", "Ana   Maria", "Hello"),
]


@pytest.mark.parametrize(
    ("sender_name", "to_name", "subject"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_same_message_as_reference(sender_name: str, to_name: str | None, subject: str) -> None:
    sender = Sender(name=sender_name, address="news@example.org", reply_to="office@example.org")
    factory = make_factory(sender=sender, subject=subject, language="es")
    args = recipient_args(to_name)
    values = args["values"]
    assert isinstance(values, dict)
    fast_raw = factory.build(**args)  # type: ignore[arg-type]
    fast = parse(fast_raw)

    rendered = RenderedEmail(
        subject=subject,
        html=substitute(HTML, values, escape=True),
        text=substitute(TEXT, values, escape=False),
        language="es",
        html_template="email/statement.html",
        text_template="email/statement.txt",
        unsubscribe_url=str(args["unsubscribe_url"]),
    )
    ref = parse(
        build_email(
            rendered=rendered,
            sender=sender,
            recipient=Recipient(email="ana@example.net", name=to_name, language="es"),
            delivery_key="may-day/2027/1",
            list_name=LIST,
            unsubscribe_mailto=MAILTO,
            date=DATE,
        ).as_bytes()
    )

    for name in HEADERS:
        assert fast[name] is not None, name
        assert not fast[name].defects, (name, fast[name].defects)
        if name in ("From", "To"):
            continue
        if name == "Subject" and "=?" in subject:
            # The reference writes "=?...?=" as is, so a reader decodes it: it changes the text.
            continue
        assert str(fast[name]) == str(ref[name]), name
    for name, display in (("From", sender_name), ("To", to_name or "")):
        expected = " ".join(display.split())
        fast_addr = fast[name].addresses
        assert len(fast_addr) == 1
        assert fast_addr[0].addr_spec == ref[name].addresses[0].addr_spec
        # Exactly the name for an RFC 2047 decoder (the legacy email.header API is one).
        assert rfc2047_display_name(fast_raw, name) == expected, name
        # headerregistry keeps the white space between adjacent encoded-words (RFC 2047 says
        # to drop it), which only long names need: equal up to white space.
        assert " ".join(fast_addr[0].display_name.split()) == expected, name
        if len(expected.encode()) <= 42:  # one encoded-word: identical everywhere
            assert fast_addr[0].display_name == expected
        if "=?" not in expected:
            # The reference lets a quoted "=?...?=" in a name be decoded: it changes the name.
            ref_display = ref[name].addresses[0].display_name
            assert " ".join(ref_display.split()) == expected, name
    assert str(fast["Subject"]) == " ".join(subject.split())
    # The reference loses Content-Language: EmailMessage.set_content() deletes every
    # Content-* header it finds, and build_email sets the language before the content.
    assert fast["Content-Language"] == "es"
    assert ref["Content-Language"] == "es"

    assert fast.get_content_type() == "multipart/alternative"
    assert content(fast, "plain") == content(ref, "plain")
    assert content(fast, "html") == content(ref, "html")
    assert not fast.defects
    assert all(not part.defects for part in fast.walk())


def test_values_are_escaped_in_html_and_raw_in_text() -> None:
    factory = make_factory()
    args = recipient_args('Ana <b>&"')
    msg = parse(factory.build(**args))  # type: ignore[arg-type]
    text, html_part = content(msg, "plain"), content(msg, "html")
    assert 'Dear Ana <b>&",' in text
    assert "<p>Dear Ana &lt;b&gt;&amp;&quot;,</p>" in html_part
    assert "<b>" not in html_part
    url = str(args["unsubscribe_url"])
    assert f"Unsubscribe: {url}\r\n" in text
    assert f'<a href="{html.escape(url)}">Unsubscribe</a>' in html_part
    assert not any(token in text or token in html_part for token in TOKENS)
    # Exactly the expected bodies, in MIME canonical form (CRLF).
    values = args["values"]
    assert isinstance(values, dict)
    assert text == substitute(TEXT, values, escape=False).replace("\n", "\r\n")
    assert html_part == substitute(HTML, values, escape=True).replace("\n", "\r\n")


def test_build_reference_decodes_the_same() -> None:
    factory = make_factory(subject="¡Hola, José!")
    args = recipient_args("Nguyễn Thị Minh Khai")
    fast = parse(factory.build(**args))  # type: ignore[arg-type]
    ref = parse(factory.build_reference(**args))  # type: ignore[arg-type]
    for name in HEADERS:
        assert str(fast[name]) == str(ref[name]), name
    assert content(fast, "plain") == content(ref, "plain")
    assert content(fast, "html") == content(ref, "html")


# --- the cached base64 is exactly base64 of the whole body ------------------------------------


def b64_section(raw: bytes, subtype: str) -> bytes:
    match = re.search(
        rb"Content-Type: text/" + subtype.encode() + rb'; charset="utf-8"\r\n'
        rb"Content-Transfer-Encoding: base64\r\n\r\n(.*?)--=_",
        raw,
        re.S,
    )
    assert match, subtype
    return match.group(1)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (TEXT, TOKENS),
        ("x" * 500 + NAME + "y" * 57 + UNSUB + PREFS + "z" * 1000 + "\n", TOKENS),
        (NAME + "\n", [NAME]),  # a token at the start, then only the added line break
        ("€" * 300 + NAME + NAME + "ü" * 29 + NAME, [NAME]),  # repeated, adjacent, at the end
        ("no tokens at all\n" * 40, [NAME]),
        ("", [NAME]),
    ],
    ids=["template", "long-runs", "start", "repeated", "no-token", "empty"],
)
def test_base64_bodies_equal_plain_encoding(text: str, tokens: list[str]) -> None:
    factory = make_factory(text=text, html_body=text, tokens=tokens)
    rng = random.Random(1234)
    alphabet = "abcXYZ <>&\"'é€🌍\n"
    for i in range(300):  # many value lengths: every one of the 57 line alignments is hit
        values = {
            t: "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 130))) for t in tokens
        }
        raw = factory.build(
            to_email="ana@example.net",
            to_name=None,
            message_id=f"<{i}@example.org>",
            unsubscribe_url="https://example.org/u/1",
            values=values,
        )
        for subtype, escape in (("plain", False), ("html", True)):
            # The factory ends the template, not the substituted body, with a line break.
            template = text if text.endswith("\n") else text + "\n"
            body = substitute(template, values, escape=escape)
            body = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
            expected = base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")
            assert b64_section(raw, subtype) == (expected or b"\r\n"), (i, subtype)


# --- header injection -------------------------------------------------------------------------

EVIL_NAMES = [
    "Ana\r\nBcc: victim@example.org",
    "Ana\nBcc: victim@example.org",
    "Ana\rBcc: victim@example.org",
    "Ana\x00Bcc: victim@example.org",
    "Ana\u2028Bcc: victim@example.org",
    "Ana\x85Bcc: victim@example.org",
    "José\r\n\r\n<html>body</html>",
    "\r\n",
    "Ana\x0b\x0c\x1b[31m",
]


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_names_cannot_inject_headers(name: str) -> None:
    factory = make_factory(subject="Hello\r\nBcc: subject@example.org")
    raw = factory.build(**recipient_args(name))  # type: ignore[arg-type]
    head = header_block(raw)
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if not line.startswith(b" ")]
    assert names == [
        b"From",
        b"Subject",
        b"Date",
        b"To",
        b"Message-ID",
        b"List-Unsubscribe",
        b"List-Id",
        b"List-Unsubscribe-Post",
        b"Content-Language",
        b"MIME-Version",
        b"Content-Type",
    ]
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert len(msg["To"].addresses) == 1
    assert msg["To"].addresses[0].addr_spec == "ana@example.net"
    display = msg["To"].addresses[0].display_name
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", display)
    assert display == " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u2028]", " ", name).split())
    assert str(msg["Subject"]) == "Hello Bcc: subject@example.org"
    assert not msg.defects


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.net\r\nBcc: victim@example.org",
        "ana@example.net\n",
        "ana@exa\rmple.net",
        "ana @example.net",
        "ana@example.net>, <victim@example.org",
        "<ana@example.net>",
        "ana@example.net,victim@example.org",
        '"ana"@example.net',
        "anä@example.net",
        "ana@example.net\x00",
        "",
        "a" * 250 + "@example.net",
    ],
)
def test_bad_recipient_address_is_refused(address: str) -> None:
    factory = make_factory()
    args = recipient_args("Ana", email_=address)
    with pytest.raises(ValueError, match="recipient address"):
        factory.build(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message_id", "<abc@example.org>\r\nBcc: victim@example.org"),
        ("message_id", "abc@example.org"),
        ("message_id", "<abc def@example.org>"),
        ("unsubscribe_url", "https://example.org/u\r\nBcc: victim@example.org"),
        ("unsubscribe_url", "https://example.org/u>, <https://evil.example"),
        ("unsubscribe_url", "https://example.org/ü"),
        ("unsubscribe_url", "https://example.org/a b"),
    ],
)
def test_bad_message_id_or_url_is_refused(field: str, value: str) -> None:
    args = recipient_args("Ana")
    args[field] = value
    with pytest.raises(ValueError):
        make_factory().build(**args)  # type: ignore[arg-type]


def test_factory_refuses_bad_constant_inputs() -> None:
    with pytest.raises(ValueError, match="occurs in the subject"):
        make_factory(subject=f"Hello {NAME}")
    with pytest.raises(ValueError, match="inside token"):
        make_factory(tokens=["ZZRCPT0ZZ", "ZZRCPT0ZZ7f3a9c"])
    with pytest.raises(ValueError, match="ASCII letters or digits"):
        make_factory(tokens=["{{name}}"])
    with pytest.raises(ValueError, match="timezone-aware"):
        MessageFactory(
            sender=Sender(name="A", address="a@example.org"),
            subject="s",
            text="t",
            html="h",
            language="en",
            list_id="<l.example.org>",
            unsubscribe_mailto=None,
            date=dt.datetime(2027, 5, 1, 8, 0),
            tokens=[],
        )
    with pytest.raises(ValueError, match="Content-Language"):
        make_factory(language="en\r\nBcc: x@example.org")
    with pytest.raises(ValueError, match="mailto"):
        make_factory(mailto="unsub@example.org?subject=x")
    with pytest.raises(ValueError, match="no value for token"):
        make_factory().build(
            to_email="ana@example.net",
            to_name="Ana",
            message_id="<1@example.org>",
            unsubscribe_url="https://example.org/u",
            values={NAME: "Ana"},
        )


# --- wire form --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Ana", "Ñandú " * 40, "فاطمة " * 25, "O'Brien, " * 60, None])
def test_wire_form(name: str | None) -> None:
    factory = make_factory(subject=LONG_SUBJECT_NON_ASCII + " " + "x" * 950)
    raw = factory.build(**recipient_args(name))  # type: ignore[arg-type]
    assert raw.isascii()
    assert raw.endswith(b"\r\n")
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)", raw), "a bare CR or LF"
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    head = header_block(raw)
    for line in head.split(b"\r\n"):
        if not line.startswith(b"List-Unsubscribe:"):
            assert len(line) <= 78, line
    for word in re.findall(rb"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head):
        assert len(word) <= 75, word
    boundary = parse(raw).get_boundary()
    assert boundary and len(boundary) <= 70
    assert raw.count(f"--{boundary}".encode()) == 3
    assert raw.endswith(f"--{boundary}--\r\n".encode())
    msg = parse(raw)
    for subtype in ("plain", "html"):
        assert boundary not in content(msg, subtype)
    assert str(msg["Subject"]) == LONG_SUBJECT_NON_ASCII + " " + "x" * 950


def test_boundary_is_random_per_factory_and_avoids_the_bodies() -> None:
    first, second = make_factory(), make_factory()
    assert first.boundary != second.boundary
    text = f"{first.boundary}\n{NAME}\n"
    third = make_factory(text=text, html_body=text)
    assert third.boundary not in text
    assert not set("_") <= set(base64.b64encode(b"any bytes at all").decode())  # "_" never in b64


def test_list_unsubscribe_stays_plain_ascii_and_one_line() -> None:
    factory = make_factory()
    token = "eyJzIjoxfQ." + "A" * 27
    long_url = "https://example.org/unsubscribe/" + "a" * 400 + "/" + token
    args = recipient_args("Ana")
    args["unsubscribe_url"] = long_url
    raw = factory.build(**args)  # type: ignore[arg-type]
    line = next(x for x in raw.split(b"\r\n") if x.startswith(b"List-Unsubscribe:"))
    # The mailto's subject carries the link's token: a request to it names the subscriber.
    mailto = f"<mailto:{MAILTO}?subject=unsubscribe%20{token}>"
    assert line == f"List-Unsubscribe: <{long_url}>, {mailto}".encode()
    assert str(parse(raw)["List-Unsubscribe"]).startswith(f"<{long_url}>")

    # Longer than one line allows: folded only at ", " between the two URIs, never encoded.
    longer_url = "https://example.org/unsubscribe/" + "B" * 900 + "/" + token
    args["unsubscribe_url"] = longer_url
    raw = factory.build(**args)  # type: ignore[arg-type]
    assert f"List-Unsubscribe: <{longer_url}>,\r\n <mailto:".encode() in raw
    assert b"=?" not in header_block(raw)
    assert str(parse(raw)["List-Unsubscribe"]) == f"<{longer_url}>, {mailto}"

    args["unsubscribe_url"] = "https://example.org/unsubscribe/" + "C" * 1000
    with pytest.raises(ValueError, match="too long"):
        factory.build(**args)  # type: ignore[arg-type]


def test_without_mailto_and_reply_to() -> None:
    factory = make_factory(mailto=None)
    args = recipient_args("Ana")
    msg = parse(factory.build(**args))  # type: ignore[arg-type]
    assert str(msg["List-Unsubscribe"]) == f"<{args['unsubscribe_url']}>"
    assert msg["Reply-To"] is None
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"].datetime == DATE


def test_date_in_the_zone_given_also_for_the_same_instant() -> None:
    # The Date line is formatted once a second and reused: the same instant in another
    # zone must still print its own offset, and the second must follow the clock.
    factory = make_factory(mailto=None)
    args = recipient_args("Ana")
    brussels = DATE.astimezone(dt.timezone(dt.timedelta(hours=2)))
    later = DATE + dt.timedelta(seconds=1, microseconds=1)
    end_of_second = DATE + dt.timedelta(microseconds=999_999)
    # Before 1970 the second is still the one the instant is in (rounded down, not to 0).
    before_epoch = dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC)
    lines = [
        header_block(factory.build(**args, date=d)).split(b"Date: ")[1].split(b"\r\n")[0]  # type: ignore[arg-type]
        for d in (DATE, brussels, DATE, end_of_second, later, before_epoch, DATE)
    ]
    assert lines == [
        b"Sat, 01 May 2027 08:30:00 +0000",
        b"Sat, 01 May 2027 10:30:00 +0200",
        b"Sat, 01 May 2027 08:30:00 +0000",
        b"Sat, 01 May 2027 08:30:00 +0000",
        b"Sat, 01 May 2027 08:30:01 +0000",
        b"Wed, 31 Dec 1969 23:59:59 +0000",
        b"Sat, 01 May 2027 08:30:00 +0000",
    ]


# --- DKIM -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A fresh 2048-bit RSA key (PEM private key, base64 DER public key) from openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to generate a test key")
    directory = tmp_path_factory.mktemp("dkim")
    key = directory / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key.read_bytes(), base64.b64encode(public)


def test_dkim_signature_verifies_and_tampering_fails(rsa_key: tuple[bytes, bytes]) -> None:
    dkim = pytest.importorskip("dkim")
    from scheduler.mail.dkim import DkimSigner

    private, public = rsa_key
    asked: list[bytes] = []

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        if name != b"may2027._domainkey.example.org.":
            return b""
        return b"v=DKIM1; k=rsa; p=" + public

    signer = DkimSigner("may2027", "example.org", private)
    raw = make_factory(subject="¡Hola!").build(**recipient_args("José Ramírez"))  # type: ignore[arg-type]
    signed = signer.sign(raw)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(raw)
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert asked == [b"may2027._domainkey.example.org."]
    msg = parse(signed)
    tags = str(msg["DKIM-Signature"]).replace(" ", "")
    signed_headers = re.search(r"h=([^;]+)", tags)
    assert signed_headers
    for name in ("from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed_headers.group(1).split(":").count(name) == 2, name  # oversigned

    url = str(recipient_args("José Ramírez")["unsubscribe_url"]).encode()
    tampered = signed.replace(
        b"List-Unsubscribe: <" + url, b"List-Unsubscribe: <https://evil.example/x"
    )
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    added = signed.replace(b"\r\nDate: ", b"\r\nSubject: Free money\r\nDate: ", 1)
    assert not dkim.verify(added, dnsfunc=dnsfunc)
    body = signed[:-10] + (b"A" if signed[-10:-9] != b"A" else b"B") + signed[-9:]
    assert not dkim.verify(body, dnsfunc=dnsfunc)


def test_dkim_signer_checks_its_inputs(rsa_key: tuple[bytes, bytes]) -> None:
    pytest.importorskip("dkim")
    from scheduler.mail.dkim import DkimSigner

    private, _ = rsa_key
    with pytest.raises(ValueError, match="From"):
        DkimSigner("s1", "example.org", private, headers=("Subject", "To"))
    with pytest.raises(ValueError, match="PEM RSA or Ed25519 private key"):
        DkimSigner("s1", "example.org", b"-----BEGIN PRIVATE KEY-----\nnope\n-----END")
    with pytest.raises(ValueError, match="selector"):
        DkimSigner("s1\r\nx", "example.org", private)


def test_dkim_module_imports_without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes an import fail as if the package were not installed.
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.delitem(sys.modules, "scheduler.mail.dkim", raising=False)
    import scheduler.mail.dkim as module

    with pytest.raises(module.DkimUnavailable, match="pip install"):
        module.DkimSigner("s1", "example.org", b"")
    assert Path(module.__file__ or "").name == "dkim.py"


def test_ed25519_signature_verifies_with_dkimpy() -> None:
    # RFC 8463 beside RSA: dkimpy (with PyNaCl) verifies it; tampering fails.
    dkim = pytest.importorskip("dkim")
    pytest.importorskip("nacl")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from scheduler.mail.dkim import DkimSigner

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"ed2027._domainkey.example.org."
        return b"v=DKIM1; k=ed25519; p=" + public

    signer = DkimSigner("ed2027", "example.org", pem)
    assert signer.algorithm == "ed25519-sha256"
    raw = make_factory(subject="¡Hola!").build(**recipient_args("José Ramírez"))  # type: ignore[arg-type]
    signed = signer.sign(raw)
    assert b"a=ed25519-sha256" in signed
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert not dkim.verify(signed.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dnsfunc)


@pytest.mark.parametrize(
    "message",
    [
        # folded and spaced headers, trailing blanks, empty lines at the end of the body
        b"From:  Ana <ana@example.org>  \r\nTo: b@example.org\r\nSubject: a\r\n\t folded"
        b"   subject\r\nX-Other: not signed\r\n\r\nline  with   spaces  \r\n\r\n\r\n",
        b"From: a@example.org\r\nSubject: no body\r\n\r\n",
        b"From: a@example.org\nTo: lf@example.org\n\nbare LF lines\n.\nlast line, no newline",
        b"From: a@example.org\r\nFrom: second@example.org\r\n\r\ntwo From fields\r\n",
    ],
)
def test_canonicalization_agrees_with_dkimpy(rsa_key: tuple[bytes, bytes], message: bytes) -> None:
    dkim = pytest.importorskip("dkim")
    from scheduler.mail.dkim import DkimSigner

    private, public = rsa_key
    signer = DkimSigner("s1", "example.org", private)
    signed = signer.sign(message)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: b"v=DKIM1; k=rsa; p=" + public)
