"""`users add | list | remove | link`: organizer accounts of the dashboard; `audit`: who did
what. A password is never a shell argument: it is set through a one-time link or typed at a
prompt."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler.accounts import audit
from scheduler.accounts import store as accounts
from scheduler.accounts.passwords import check_strength
from scheduler.console import fail, out, print_json, store, valid_project
from scheduler.errors import AccountError


def password_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/dashboard/password/{token}"


def _prompt_password() -> str:
    first: str = typer.prompt("password", hide_input=True)
    second: str = typer.prompt("again", hide_input=True)
    if first != second:
        fail("the two passwords differ; nothing was changed")
    return first


def add_command(
    email: Annotated[str, typer.Argument(help="the organizer's address (their sign-in)")],
    role: Annotated[str, typer.Option(help="viewer | organizer | approver")] = "viewer",
    chapter: Annotated[
        str | None, typer.Option(help="chapter id: acts only on that chapter's campaigns")
    ] = None,
    prompt: Annotated[
        bool, typer.Option("--prompt", help="type the password now instead of a link")
    ] = False,
) -> None:
    """Add an account; prints a one-time link (valid 24 h) that sets its password."""
    project = valid_project()
    engine = store()
    try:
        chosen = accounts.parse_role(role)
        password = _prompt_password() if prompt else None
        if password is not None:
            check_strength(password)
        account = accounts.add(engine, email, chosen, chapter)
        if password is not None:
            accounts.set_password(engine, account.id, password)
    except AccountError as e:
        fail(str(e), 2)
    audit.record(
        engine,
        actor=audit.cli_actor(),
        action="account.add",
        target=account.email,
        detail=f"role={account.role.value} chapter={account.chapter or '-'}",
    )
    out.print(f"{account.email}: {account.role.value} account added", markup=False)
    if not prompt:
        token = accounts.issue_link(engine, account.id)
        out.print("set the password within 24 hours at:", markup=False)
        out.print(password_url(project.config.organization.public_url, token), markup=False)


def link_command(email: Annotated[str, typer.Argument(help="the account's address")]) -> None:
    """A new one-time link that sets (or resets) the password of an account."""
    project = valid_project()
    engine = store()
    account = accounts.get(engine, email)
    if account is None:
        fail(f"no account {email}; see `scheduler users list`", 2)
    token = accounts.issue_link(engine, account.id)
    audit.record(engine, actor=audit.cli_actor(), action="account.link", target=account.email)
    out.print(password_url(project.config.organization.public_url, token), markup=False)


def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every account, its role, chapter and whether its password is set."""
    found = accounts.all_accounts(store())
    if as_json:
        print_json([a.as_json() for a in found])
        return
    if not found:
        out.print("no accounts; add one with `scheduler users add EMAIL --role organizer`")
        return
    for a in found:
        password = "password set" if a.has_password else "no password yet"
        out.print(
            f"{a.email}  {a.role.value}  chapter={a.chapter or '-'}  {password}", markup=False
        )


def remove_command(email: Annotated[str, typer.Argument(help="the account's address")]) -> None:
    """Remove an account: its sessions stop working at their next request."""
    engine = store()
    if not accounts.remove(engine, email):
        fail(f"no account {email}; see `scheduler users list`", 2)
    audit.record(engine, actor=audit.cli_actor(), action="account.remove", target=email)
    out.print(f"{email}: removed", markup=False)


def audit_command(
    limit: Annotated[int, typer.Option(help="how many entries, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Who did what, when and from where (dashboard and command line)."""
    found = audit.entries(store(), limit=limit)
    if as_json:
        print_json([e.as_json() for e in found])
        return
    for e in found:
        out.print(
            f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.actor}  {e.action}  {e.target or '-'}"
            f"  {e.detail or ''}  from {e.origin}",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Organizer accounts of the dashboard.", no_args_is_help=True)
    users.command("add")(add_command)
    users.command("list")(list_command)
    users.command("remove")(remove_command)
    users.command("link")(link_command)
    app.add_typer(users, name="users")
    app.command("audit")(audit_command)
