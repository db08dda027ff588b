"""A real Dovecot (Debian's dovecot-imapd and dovecot-pop3d) for the mailbox tests.

Each test gets its own instance: its own configuration, mail directory and TLS certificate
(self-signed, made here) in a temporary directory, a passwd-file with one user, and random
free ports for IMAPS and POP3S. Without /usr/sbin/dovecot the tests skip, except under
CI=true, where they fail (.ci/run installs it).

    def test_x(dovecot: Dovecot) -> None:
        dovecot.append(raw_message)                        # into INBOX, over IMAPS
        url = dovecot.url("imaps")                         # imaps://bounces:...@127.0.0.1:PORT/INBOX
        ... read with cafile=dovecot.cafile ...
        assert dovecot.folder("Processed") == [raw_message]
"""

from __future__ import annotations

import datetime as dt
import getpass
import grp
import imaplib
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.1"
USER = "bounces"
PASSWORD = "test-mailbox-password"


def self_signed(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and `name`, and its key (PEM files in `directory`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = {host}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login_user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{root}/mail/%u
pop3_uidl_format = %08Xu%08Xv
namespace inbox {{
  inbox = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""


@dataclass
class Dovecot:
    root: Path
    cafile: str
    imaps_port: int
    pop3s_port: int

    def url(self, scheme: str = "imaps", folder: str = "INBOX") -> str:
        port = self.imaps_port if scheme == "imaps" else self.pop3s_port
        path = f"/{folder}" if scheme == "imaps" else ""
        return f"{scheme}://{USER}:{PASSWORD}@{HOST}:{port}{path}"

    def _imap(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=self.cafile)
        conn = imaplib.IMAP4_SSL(HOST, self.imaps_port, ssl_context=context, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        conn = self._imap()
        try:
            conn.create(folder)
            typ, data = conn.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def folder(self, folder: str = "INBOX") -> list[tuple[bytes, set[str]]]:
        """Every message of `folder` with its flags, in order."""
        conn = self._imap()
        try:
            typ, _ = conn.select(folder)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", "ALL")
            out = []
            for uid in (data[0] or b"").split():
                typ, fetched = conn.uid("FETCH", uid.decode(), "(FLAGS BODY.PEEK[])")
                head, raw = next(p for p in fetched if isinstance(p, tuple))
                flags = set(imaplib.ParseFlags(head)) if b"FLAGS" in head else set()
                out.append((raw, {f.decode() for f in flags}))
            return out
        finally:
            conn.logout()


def _wait_for(port: int, log: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise RuntimeError(f"Dovecot did not start on port {port}:\n{text}")


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if not Path(DOVECOT).exists():
        reason = f"{DOVECOT} is missing (apt-get install dovecot-imapd dovecot-pop3d)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: a missing service is a failure, not a skip)")
        pytest.skip(reason)
    # Not under tmp_path: pytest makes /tmp/pytest-of-USER private again whenever any pytest
    # run of that user starts, and Dovecot's own processes (other users when run as root)
    # must reach these files. A directory of its own, removed afterwards.
    root = Path(tempfile.mkdtemp(prefix="scheduler-dovecot-"))
    root.chmod(0o711)
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True)
    cert, key = self_signed(root)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    uid, gid = os.getuid(), os.getgid()
    user = login_user = getpass.getuser()
    if uid == 0:
        # Dovecot refuses to run its login and mail processes as root: use Debian's users.
        user, login_user = "dovecot", "dovenull"
        uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
        for sub in ("mail", "home"):
            os.chown(root / sub, uid, gid)
    ports = (_free_port(), _free_port())
    config = root / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            root=root,
            host=HOST,
            cert=cert,
            key=key,
            user=user,
            login_user=login_user,
            group=grp.getgrgid(gid).gr_name,
            uid=uid,
            gid=gid,
            imaps=ports[0],
            pop3s=ports[1],
        )
    )
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(ports[0], root / "dovecot.log", process)
        _wait_for(ports[1], root / "dovecot.log", process)
        yield Dovecot(root=root, cafile=str(cert), imaps_port=ports[0], pop3s_port=ports[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
