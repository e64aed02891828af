"""The backoff schedule and the dead letter (pure)."""

from __future__ import annotations

from datetime import UTC

from quotameter.delivery.model import DEAD, PENDING, Policy, after_failure, number, retry_delay_us


def test_backoff_doubles_from_30_seconds_up_to_an_hour() -> None:
    p = Policy()
    assert [retry_delay_us(n, p) // 1_000_000 for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert retry_delay_us(10_000, p) == 3_600_000_000


def test_the_last_attempt_goes_to_the_dead_letter() -> None:
    p = Policy(max_attempts=3)
    assert after_failure(1, 100, p) == (PENDING, 100 + 30_000_000)
    assert after_failure(2, 100, p) == (PENDING, 100 + 60_000_000)
    assert after_failure(3, 100, p) == (DEAD, 100)


def test_numbers_are_exact_and_grouped() -> None:
    assert (number("4250"), number("4250.000000000000"), number("12.50"), number(None)) == (
        "4,250",
        "4,250",
        "12.5",
        "-",
    )


def test_e_mails_write_money_in_its_currency_and_unit_prices_unrounded() -> None:
    from datetime import datetime

    from quotameter.catalog.model import PlanSpec
    from quotameter.delivery.model import Notice, advice

    def plan(currency: str, price: str, unit_price: str) -> PlanSpec:
        return PlanSpec.model_validate(
            {
                "currency": currency,
                "prices": [{"type": "overage", "feature": "f", "unit_price": unit_price}],
                "entitlements": {
                    "f": {
                        "meter": "m",
                        "allowance": {"fixed": 10},
                        "enforcement": "overage",
                        "topup": {"block_size": 5, "price": price},
                    }
                },
            }
        )

    def said(p: PlanSpec) -> list[str]:
        notice = Notice(
            1,
            "c",
            "usage.threshold",
            "f",
            None,
            None,
            None,
            datetime(2026, 3, 1, tzinfo=UTC),
            {},
            {"plan": "p", "unit": "minute"},
        )
        return advice(notice, {"p": p})

    assert said(plan("USD", "5", "0.005")) == [
        "Buy a block of 5 minutes for 5.00 USD from the billing menu: it is added at once.",
        "Use beyond the limit is billed at 0.005 USD per minute.",
    ]
    assert said(plan("JPY", "1500", "2"))[0].endswith(
        "for 1,500 JPY from the billing menu: it is added at once."
    )
