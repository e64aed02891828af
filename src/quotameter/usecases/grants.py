"""Top-ups and credits: checked against the customer's plan and period, refused inside a
finalized period, recorded with their price, and a bought top-up noticed at once."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from quotameter.context import Context
from quotameter.customers import service as customers
from quotameter.entitlements.service import entitlement_of, period_of
from quotameter.errors import Conflict, Invalid
from quotameter.grants import service as grants
from quotameter.invoices.service import refuse_if_finalized
from quotameter.money import amount_text
from quotameter.notice_kinds import NoticeKind
from quotameter.notifications import service as notices
from quotameter.notifications.service import recipients
from quotameter.periods import period_containing
from quotameter.timeutil import to_us


def add(
    ctx: Context,
    req: grants.GrantRequest,
    effective: datetime,
    recorded_us: int,
) -> tuple[dict[str, Any], bool]:
    """Record a grant; (the grant, created). Repeating an id returns the first grant.

    A new top-up also records its `topup.applied` notice, in the same transaction."""
    conn = ctx.conn
    view = customers.view(ctx, req.customer, to_us(effective))
    ent = entitlement_of(view, req.feature)
    refuse_if_finalized(conn, req.customer, to_us(effective))
    if ent.allowance is None:
        raise Invalid(
            f"feature: {req.feature!r} is unlimited on plan {view.plan_name!r}; there is nothing "
            "to add to"
        )
    price: Decimal | None = None
    if req.kind == "topup":
        if ent.topup is None:
            raise Invalid(f"feature: plan {view.plan_name!r} sells no top-ups of {req.feature!r}")
        if req.blocks is None or req.blocks < 1:
            raise Invalid("blocks: must be a whole number of at least 1")
        amount = ent.topup.block_size * req.blocks
        price = ent.topup.price * req.blocks
    else:
        if req.amount is None or req.amount <= 0:
            raise Invalid("amount: must be greater than 0")
        amount = req.amount
    period = period_of(view, ent, effective)
    expires = period.end
    if req.rollover:
        expires = period_containing(
            ent.period, period.end, tz=view.spec.timezone, anchor=view.spec.billing_anchor
        ).end
    row = {
        "customer": req.customer,
        "grant_id": req.grant_id,
        "feature": req.feature,
        "kind": req.kind,
        "amount": amount,
        "blocks": req.blocks,
        "price": price,
        "rollover": req.rollover,
        "effective_us": to_us(effective),
        "period_start_us": to_us(period.start),
        "expires_us": to_us(expires),
        "recorded_us": recorded_us,
    }
    created = grants.store(conn, row)
    stored = grants.get(conn, req.customer, req.grant_id)
    if not created and (stored.feature, stored.kind, Decimal(stored.amount)) != (
        req.feature,
        req.kind,
        amount,
    ):
        raise Conflict(
            f"id: {req.grant_id!r} was already used for another grant "
            f"({stored.kind} of {stored.amount} {stored.feature})"
        )
    grant = grants.as_dict(stored, view.plan.currency)
    if created and req.kind == "topup" and price is not None:
        notices.record(
            conn,
            customer=req.customer,
            feature=req.feature,
            type=NoticeKind.TOPUP_APPLIED,
            percent=None,
            period=None,
            at_us=to_us(effective),
            recipients=recipients(view, ent, NoticeKind.TOPUP_APPLIED),
            payload={
                "blocks": req.blocks,
                "amount": format(amount, "f"),
                "price": amount_text(price, view.plan.currency),
            },
            recorded_us=recorded_us,
        )
    return grant, created
