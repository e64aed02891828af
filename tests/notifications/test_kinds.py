"""The kinds of notice: one type, whose members are the strings stored, listed and sent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from quotameter.delivery.model import Notice, describe
from quotameter.entitlements.model import thresholds
from quotameter.notice_kinds import NoticeKind

VALUES = [
    "usage.threshold",
    "usage.exhausted",
    "access.blocked",
    "access.restored",
    "plan.upgrading",
    "plan.upgraded",
    "topup.applied",
]


def test_each_kind_is_its_string_in_storage_and_json() -> None:
    assert [k.value for k in NoticeKind] == VALUES
    for kind in NoticeKind:
        assert kind == kind.value and str(kind) == kind.value and f"{kind}" == kind.value
        assert orjson.dumps({"type": kind}) == orjson.dumps({"type": kind.value})
        assert NoticeKind(kind.value) is kind


def test_the_notices_schema_lists_every_kind() -> None:
    from quotameter.api.notifications import NoticeOut

    schema = NoticeOut.model_json_schema()
    assert schema["properties"]["type"]["$ref"] == "#/$defs/NoticeKind"
    assert schema["$defs"]["NoticeKind"]["enum"] == VALUES


def test_the_levels_of_an_allowance_record_kinds_of_notice() -> None:
    from quotameter.catalog.model import Notify

    notify = Notify(percent_used=[50], percent_remaining=[10], exhausted=True)
    assert {t.kind for t in thresholds(notify)} == {
        NoticeKind.USAGE_THRESHOLD,
        NoticeKind.USAGE_EXHAUSTED,
    }


def test_every_kind_has_words_of_its_own() -> None:
    """No kind falls through to the generic subject an unknown type gets."""
    for kind in NoticeKind:
        notice = Notice(
            id=1,
            customer="acme",
            type=kind,
            feature="media",
            percent=Decimal(80),
            period_start=None,
            period_end=None,
            at=datetime(2026, 3, 10, tzinfo=UTC),
            recipients={"email": ["ops@acme.example"]},
            details={"usage": "80", "limit": "100", "plan": "pro", "unit": "minute"},
        )
        assert describe(notice, {}).subject != f"acme: {kind}", kind
