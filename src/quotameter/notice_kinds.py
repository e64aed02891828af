"""The kinds of notice: what a recorded notice says happened.

A kind is stored, listed by the API and sent in e-mails and webhooks as its string value
(`usage.threshold`, ...); being a `StrEnum`, each member is that string.
"""

from __future__ import annotations

from enum import StrEnum


class NoticeKind(StrEnum):
    USAGE_THRESHOLD = "usage.threshold"  # a notify level of the allowance was passed
    USAGE_EXHAUSTED = "usage.exhausted"  # the whole allowance is used
    ACCESS_BLOCKED = "access.blocked"  # the hard limit is reached: the feature stops
    ACCESS_RESTORED = "access.restored"  # a block is lifted
    PLAN_UPGRADING = "plan.upgrading"  # auto-upgrade: the subscription is moving up
    PLAN_UPGRADED = "plan.upgraded"  # auto-upgrade: the subscription moved up
    TOPUP_APPLIED = "topup.applied"  # a top-up block was bought
