"""The forecast: when the allowance runs out at the period's pace so far (a pure function on
pinned instants, in zones east and west of UTC), and as the balance answers it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from quotameter.entitlements.model import Forecast, Standing, forecast
from quotameter.periods import calendar_month
from support import demo_catalog, stream

D = Decimal


def standing(usage: int | str, limit: int | str | None, level: int | None = None) -> Standing:
    lim = None if limit is None else D(limit)
    return Standing(
        usage=D(usage),
        level=None if level is None else D(level),
        included=lim,
        granted=D(0),
        limit=lim,
        hard_limit=lim,
        remaining=None if lim is None else max(D(0), lim - D(usage)),
        overage=D(0) if lim is None else max(D(0), D(usage) - lim),
        has_access=True,
    )


def in_month(usage: int | str, limit: int | str | None, at: datetime, zone: str) -> Forecast:
    period = calendar_month(at, zone)
    return forecast(standing(usage, limit), period.start, period.end, at)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


NOT_THIS_PERIOD = Forecast(None, False, False)


# --- the 1st at 00:30 ------------------------------------------------------------------------


def test_half_an_hour_into_the_month_the_pace_of_that_half_hour_goes_on() -> None:
    # 10 minutes in 30: 20 an hour, so 4,990 more take 249.5 hours
    got = in_month(10, 5000, utc(2026, 11, 1, 0, 30), "UTC")
    assert got == Forecast(utc(2026, 11, 11, 10, 0), True, False)
    assert got.as_dict() == {
        "method": "period_pace",
        "runs_out_at": utc(2026, 11, 11, 10, 0),
        "this_period": True,
        "exhausted": False,
    }


def test_east_of_utc_the_month_starts_the_day_before_in_utc() -> None:
    # Tokyo's 1 Nov 00:30 is 31 Oct 15:30 UTC: half the allowance in half an hour
    assert in_month(2500, 5000, utc(2026, 10, 31, 15, 30), "Asia/Tokyo") == Forecast(
        utc(2026, 10, 31, 16, 0), True, False
    )


def test_west_of_utc_on_the_day_daylight_saving_ends() -> None:
    # New York's November starts at 04:00 UTC (EDT) and ends at 05:00 UTC (EST)
    at = utc(2026, 11, 1, 4, 30)
    assert in_month(600, 5000, at, "America/New_York") == Forecast(
        utc(2026, 11, 1, 8, 10), True, False
    )
    # 1 minute in the first half hour: 4,999 more take 104 days
    assert in_month(1, 5000, at, "America/New_York") == NOT_THIS_PERIOD


# --- the last day ----------------------------------------------------------------------------


def test_on_the_last_day_a_little_left_runs_out_before_midnight_or_not_this_period() -> None:
    at = utc(2026, 11, 30, 23, 0)  # 719 hours in: 5 left at 4,995 per 719 h take 2,590.99 s
    assert in_month(4995, 5000, at, "UTC") == Forecast(utc(2026, 11, 30, 23, 43, 11), True, False)
    # 10 left take 1.44 h: past midnight, when the month ends
    assert in_month(4990, 5000, at, "UTC") == NOT_THIS_PERIOD


def test_the_last_day_east_and_west() -> None:
    # Tokyo, 30 Nov 23:30 JST (14:30 UTC), the month ends at 15:00 UTC; 719.5 h in
    assert in_month(4999, 5000, utc(2026, 11, 30, 14, 30), "Asia/Tokyo") == Forecast(
        utc(2026, 11, 30, 14, 38, 39), True, False
    )
    assert in_month(4990, 5000, utc(2026, 11, 30, 14, 30), "Asia/Tokyo") == NOT_THIS_PERIOD
    # Los Angeles, 30 Nov 23:00 PST (1 Dec 07:00 UTC): its month ends at 08:00 UTC
    assert in_month(4999, 5000, utc(2026, 12, 1, 7, 0), "America/Los_Angeles") == Forecast(
        utc(2026, 12, 1, 7, 8, 39), True, False
    )


# --- the edges -------------------------------------------------------------------------------


def test_landing_exactly_on_the_periods_end_is_not_this_period() -> None:
    at = utc(2026, 11, 11)  # 10 of November's 30 days: a third used runs out on 1 Dec 00:00
    assert in_month(100, 300, at, "UTC") == NOT_THIS_PERIOD
    assert in_month(101, 300, at, "UTC").this_period is True


def test_at_or_over_the_limit_it_ran_out_by_now() -> None:
    at = utc(2026, 11, 20, 15, 0)
    assert in_month(5000, 5000, at, "UTC") == Forecast(at, True, True)
    assert in_month(5200, 5000, at, "UTC") == Forecast(at, True, True)
    assert in_month(0, 0, at, "UTC") == Forecast(at, True, True)  # nothing was included


def test_nothing_to_forecast_without_a_limit_without_usage_or_at_the_very_start() -> None:
    assert in_month(4526, None, utc(2026, 11, 20), "UTC") == NOT_THIS_PERIOD
    assert in_month(0, 5000, utc(2026, 11, 20), "UTC") == NOT_THIS_PERIOD
    assert in_month(3, 5000, utc(2026, 11, 1), "UTC") == NOT_THIS_PERIOD  # no time has passed


def test_a_gauge_has_no_pace_only_its_peak_past_the_limit() -> None:
    period = calendar_month(utc(2026, 11, 20), "UTC")
    rising = standing(20, 25, level=20)
    assert forecast(rising, period.start, period.end, utc(2026, 11, 20)) == NOT_THIS_PERIOD
    peaked = standing(31, 25, level=12)  # the period's highest level passed the 25 included
    assert forecast(peaked, period.start, period.end, utc(2026, 11, 20)).exhausted is True


def test_rounded_up_to_the_whole_second() -> None:
    start = utc(2026, 11, 1)
    at = start + timedelta(seconds=1)  # 3 in one second: 1 more takes a third of a second
    got = forecast(standing(3, 4), start, utc(2026, 12, 1), at)
    assert got.runs_out_at == start + timedelta(seconds=2)
    fine = forecast(standing("0.5", "10.25"), start, utc(2026, 12, 1), start + timedelta(hours=1))
    assert fine.runs_out_at == start + timedelta(hours=20, minutes=30)


# --- as the API answers it -------------------------------------------------------------------


@pytest.fixture
def acme(client: Any, clock: Any) -> Any:
    doc = demo_catalog()
    doc["customers"]["acme"]["seats"] = 1  # 500 minutes
    assert client.put("/v1/catalog", json=doc).status_code == 200
    clock.now = utc(2026, 3, 11, 0, 0)  # 10 days into March
    r = client.post(
        "/v1/events",
        json=stream(
            "media.activity",
            "acme",
            utc(2026, 3, 10, 9, 0),
            utc(2026, 3, 10, 12, 20),
            user="u1",
            stream="u1/mic",
            kind="mic",
        ),
    )
    assert r.json()["rejected"] == [], r.text
    return client


def test_every_balance_answers_its_forecast(acme: Any, clock: Any) -> None:
    # 200 minutes in 10 days: 300 more take 15 days
    want = {
        "method": "period_pace",
        "runs_out_at": "2026-03-26T00:00:00Z",
        "this_period": True,
        "exhausted": False,
    }
    one = acme.get("/v1/customers/acme/entitlements/media").json()
    assert (one["usage"], one["limit"], one["forecast"]) == (200, 500, want)
    every = acme.get("/v1/customers/acme/entitlements").json()["entitlements"]
    assert [b["forecast"] for b in every] == [want]
    checked = acme.post("/v1/customers/acme/entitlements/media/check", json={"amount": 1}).json()
    assert checked["forecast"] == want
    early = acme.get("/v1/customers/acme/entitlements/media", params={"at": "2026-03-05T00:00:00Z"})
    assert early.json()["forecast"] == {
        "method": "period_pace",
        "runs_out_at": None,
        "this_period": False,
        "exhausted": False,
    }
