"""Which occurrences need review, and by whom.

A step's `review` wins over its campaign's. Without either, a one-off campaign (a
rapid-response statement: written in hours, sent once to everyone) needs one approval as soon
as the alliance has an approver account; yearly campaign days are reviewed only when they ask
for it. With no approver account at all nobody could approve, and requiring review by default
would turn every rapid response into a missed one.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.calendar import Occurrence
from scheduler.config.model import Config, Review
from scheduler.store.schema import Role, accounts

DEFAULT_ONE_OFF = Review()


def has_approvers(engine: Engine) -> bool:
    with engine.connect() as conn:
        found = conn.scalar(
            sa.select(accounts.c.id).where(accounts.c.role == Role.APPROVER.value).limit(1)
        )
    return found is not None


def review_for(config: Config, occ: Occurrence, approvers_exist: bool) -> Review | None:
    """The review the occurrence needs, or None."""
    campaign = config.campaigns.get(occ.campaign_id)
    if campaign is None:
        return None
    step = campaign.steps.get(occ.step_id)
    chosen = (step.review if step is not None else None) or campaign.review
    if chosen is None and campaign.is_one_off and approvers_exist:
        chosen = DEFAULT_ONE_OFF
    return chosen if chosen is not None and chosen.required else None
