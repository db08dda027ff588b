"""One channel model: the registry is the one list of types, and the SMTP channel owns its
endpoint, connections, rate limiter and DKIM signer."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import ValidationError

from scheduler import channels
from scheduler.channel_registry import CHANNEL_TYPES
from scheduler.channels import (
    Channel,
    ChannelSettings,
    Post,
    PreparedPost,
    ProjectFacts,
    Runtime,
    SmtpChannel,
    sends_email,
)
from scheduler.config.model import Channel as ChannelConfig
from scheduler.mail.transport import Outgoing


class FaxSettings(ChannelSettings):
    number: str


class FaxChannel(Channel[FaxSettings]):
    type = "fax"
    max_length: ClassVar[int | None] = 1000
    Settings = FaxSettings

    def requests(self, post: Post) -> list[PreparedPost]:
        return []


def test_a_type_registered_once_is_known_to_campaigns_yaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="unknown channel type 'fax'"):
        ChannelConfig(type="fax", number="+32")
    # One registry line, as a new platform's module would add.
    monkeypatch.setitem(CHANNEL_TYPES, "fax", f"{__name__}:FaxChannel")
    config = ChannelConfig(type="fax", number="+32")
    fax = channels.from_config("office", config)
    assert isinstance(fax, FaxChannel) and fax.settings.number == "+32"
    assert not sends_email(config)


def smtp(url: str, base_dir: Path, **settings: object) -> SmtpChannel:
    config = ChannelConfig(type="smtp", url=url, sender="org", **settings)
    channel = channels.from_config("email", config, runtime=Runtime(base_dir=base_dir))
    assert isinstance(channel, SmtpChannel) and sends_email(config)
    return channel


def message(key: int) -> Outgoing:
    return Outgoing(
        key=key,
        envelope_from="news@example.org",
        recipient=f"p{key}@example.org",
        data=b"Subject: hi\r\n\r\nhello\r\n",
    )


def test_a_relative_outbox_is_under_the_projects_folder(tmp_path: Path) -> None:
    channel = smtp("file:outbox", tmp_path, connections=8)
    assert channel.folder() == tmp_path / "outbox"
    pool = channel.pool()
    assert channel.pool() is pool  # made once, kept for the process
    outcomes = list(pool.send_all([message(1), message(2)]))
    assert {o.status for o in outcomes} == {"sent"}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    channel.close()


def test_the_server_url_is_read_once_with_its_secrets(tmp_path: Path) -> None:
    channel = smtp("smtp://news:${SMTP_PW}@127.0.0.1:2525?starttls=off", tmp_path)
    endpoint = channel.endpoint({"SMTP_PW": "pa:ss@word"})
    assert (endpoint.host, endpoint.port, endpoint.password) == ("127.0.0.1", 2525, "pa:ss@word")
    assert "pa:ss" not in endpoint.display()
    assert channel.folder() is None


@pytest.mark.parametrize(
    "url",
    ["smtps://mail.example.org?starttls=off", "smtp://mail.example.org:0", "smtp:/nohost"],
)
def test_settings_refuse_what_the_transport_refuses(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        smtp(url, tmp_path)


def test_smtp_checks_its_sender_and_key_file_against_the_project(tmp_path: Path) -> None:
    channel = smtp(
        "file:outbox", tmp_path, dkim_selector="s1", dkim_private_key_file="keys/dkim.pem"
    )
    facts = ProjectFacts(base_dir=tmp_path, senders=frozenset({"orga"}))
    problems = {p.key: p for p in SmtpChannel.project_problems(channel.settings, facts)}
    assert set(problems) == {"sender", "dkim_private_key_file"}
    assert "did you mean 'orga'" in (problems["sender"].hint or "")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "dkim.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    facts = ProjectFacts(base_dir=tmp_path, senders=frozenset({"org"}))
    assert SmtpChannel.project_problems(channel.settings, facts) == []


def test_a_post_travels_as_one_value() -> None:
    post = Post(key="k", language="en", parts=("one", "two"))
    assert post.total == 2 and post.text(2) == "two"
    with pytest.raises(AttributeError):
        post.key = "other"  # type: ignore[misc]


def test_a_registry_line_naming_something_else_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(CHANNEL_TYPES, "fax", f"{__name__}:FaxSettings")
    with pytest.raises(TypeError, match="is not the channel of type 'fax'"):
        channels.get_channel_class("fax")
