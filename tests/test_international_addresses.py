"""Every valid address gets mail: internationalized domains go out as IDNA (xn--), a
non-ASCII part before '@' through SMTPUTF8 when the server offers it, else it is refused
at import with a warning that says why. Against aiosmtpd with and without SMTPUTF8."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ProjectFactory
from delivery_helpers import context, email_project, may_day
from smtp_server import SmtpTestServer
from sqlalchemy.engine import Engine

from scheduler.audience.address import (
    address_problem,
    idna_domain,
    needs_smtputf8,
    wire_address,
)
from scheduler.audience.csvfile import SubscriberRow, iter_csv
from scheduler.delivery import ledger
from scheduler.delivery.addresses import DeliverableRows
from scheduler.delivery.fire import fire
from scheduler.store.db import make_engine, migrate
from scheduler.store.subscribers import import_rows

IDN = "user@exämple.org"
UTF8 = "ünï@exämple.org"
IDN_WIRE = "user@xn--exmple-cua.org"


def test_domains_become_idna_when_the_local_part_is_ascii() -> None:
    assert idna_domain("exämple.org") == "xn--exmple-cua.org"
    assert wire_address(IDN) == IDN_WIRE
    assert wire_address(UTF8) == UTF8  # needs SMTPUTF8: kept as it is
    assert wire_address("ana@example.org") == "ana@example.org"
    assert needs_smtputf8(UTF8) and not needs_smtputf8(IDN)
    assert address_problem(IDN) is None and address_problem(UTF8) is None


def test_a_domain_with_no_idna_form_is_refused_with_the_reason() -> None:
    why = address_problem("user@ex☃mple.org")
    assert why is not None and "IDNA" in why


def _subscribe(engine: Engine, emails: list[str]) -> None:
    rows = [SubscriberRow(email=e, language="en", row=i + 2) for i, e in enumerate(emails)]
    import_rows(engine, "members", rows, source="test")


@pytest.mark.parametrize("smtputf8", [True, False])
def test_international_addresses_are_sent_as_the_server_allows(
    make_project: ProjectFactory, store_engine: Engine, smtputf8: bool
) -> None:
    with SmtpTestServer(smtputf8=smtputf8) as server:
        project = email_project(make_project, server.url)
        _subscribe(store_engine, [IDN, UTF8, "ana@example.org"])
        ctx = context(project, store_engine)
        report = fire(ctx, may_day(project))
        ctx.close()
        received = server.count_by_recipient()
    assert received[IDN_WIRE] == 1 and received["ana@example.org"] == 1
    to_headers = [m.data.split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0] for m in server.messages]
    assert IDN_WIRE.encode() in b" ".join(to_headers)
    if smtputf8:
        assert (report.result.sent, report.result.failed) == (3, 0)
        assert received[UTF8] == 1
        assert UTF8.encode() in b" ".join(to_headers)
    else:
        assert (report.result.sent, report.result.failed) == (2, 1)
        ((_, reason, n),) = ledger.failures(store_engine, may_day(project).id)
        assert n == 1 and "SMTPUTF8" in reason and "cannot compose" not in reason


@pytest.mark.parametrize("smtputf8", [True, False])
def test_import_refuses_what_the_server_could_never_deliver(
    make_project: ProjectFactory, tmp_path: Path, smtputf8: bool
) -> None:
    with SmtpTestServer(smtputf8=smtputf8) as server:
        project = email_project(make_project, server.url)
        csv = tmp_path / "people.csv"
        csv.write_text(f"email,name\n{IDN},Idn\n{UTF8},Utf\nana@example.org,Ana\n")
        db_url = f"sqlite:///{tmp_path / 'state.db'}"
        env = {
            **os.environ,
            "SCHEDULER_DATABASE_URL": db_url,
            "SCHEDULER_CONFIG": str(project.path),
        }
        result = subprocess.run(
            [sys.executable, "-m", "scheduler", "lists", "import", "members", str(csv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    engine = make_engine(db_url)
    migrate(engine)
    from scheduler.store import subscribers

    stored = {r.email for r in subscribers.active_audience(engine, ["members"])}
    engine.dispose()
    if smtputf8:
        assert stored == {IDN, UTF8, "ana@example.org"}, result.stderr
        assert "SMTPUTF8" not in result.stderr
    else:
        assert stored == {IDN, "ana@example.org"}, result.stderr
        assert f"{csv}:3" in result.stderr
        assert "does not offer SMTPUTF8" in result.stderr
        assert "ask the subscriber for another address" in result.stderr


def test_refused_rows_keep_their_place_and_the_server_is_asked_once(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Rows stream through `DeliverableRows` as they are read: the file's own problems and
    the refused addresses come out in file order, and the servers are asked once, at the
    first address that needs SMTPUTF8 (never for a file without one)."""
    project = email_project(make_project)
    csv = tmp_path / "people.csv"
    csv.write_text(
        f"email,name\n{UTF8},Utf\nnot-an-address,X\nana@example.org,Ana\nöli@example.org,Öli\n"
    )
    asked: list[str] = []

    def ask(_: object) -> list[str]:
        asked.append("asked")
        return ["mail"]

    items = iter_csv(csv, languages=["en"], default_language="en")
    rows = DeliverableRows(project, items, ask=ask)  # type: ignore[arg-type]
    assert [r.email for r in rows] == ["ana@example.org"]
    assert asked == ["asked"]
    assert rows.rows == 1
    assert [(p.row, p.column) for p in rows.problems] == [(2, "email"), (3, "email"), (5, "email")]
    assert "channel mail does not offer SMTPUTF8" in rows.problems[0].reason
    plain = tmp_path / "plain.csv"
    plain.write_text("email\nana@example.org\nbo@example.org\n")
    again = DeliverableRows(
        project, iter_csv(plain, languages=["en"], default_language="en"), ask=ask
    )  # type: ignore[arg-type]
    assert len(list(again)) == 2
    assert asked == ["asked"]  # no address needed it: the servers were not asked
