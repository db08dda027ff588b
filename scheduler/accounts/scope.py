"""What an account may do: the one place roles and chapters are checked.

Every action of the dashboard and the CLI goes through `require`; the chapter check is
`may_act_on`, which compares the campaign's chapter with the account's once campaigns have
one (the chapters work adds `Campaign.chapter`; until then every campaign is the alliance's).
"""

from __future__ import annotations

from scheduler.accounts.store import Account
from scheduler.config.model import Config
from scheduler.errors import NotAllowedError
from scheduler.store.schema import Role


def campaign_chapter(config: Config, campaign_id: str) -> str | None:
    campaign = config.campaigns.get(campaign_id)
    chapter = getattr(campaign, "chapter", None) if campaign is not None else None
    return chapter if isinstance(chapter, str) else None


def may_act_on(account: Account, config: Config, campaign_id: str) -> bool:
    """An alliance account (no chapter) acts on every campaign; a chapter's account only on
    that chapter's campaigns."""
    return account.chapter is None or account.chapter == campaign_chapter(config, campaign_id)


def require(
    account: Account | None, config: Config, campaign_id: str | None, *, approve: bool = False
) -> Account:
    """The account, if it may act (or approve) on `campaign_id`; NotAllowedError otherwise."""
    if account is None:
        raise NotAllowedError("sign in with an organizer account to do this")
    wanted = Role.APPROVER if approve else Role.ORGANIZER
    if not (account.may_approve if approve else account.may_act):
        raise NotAllowedError(
            f"{account.email} is a {account.role.value}; this needs the {wanted.value} role"
        )
    if campaign_id is not None and not may_act_on(account, config, campaign_id):
        raise NotAllowedError(
            f"{account.email} acts for chapter {account.chapter!r}, not for {campaign_id!r}"
        )
    return account
