from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotameter.timeutil import EPOCH, from_us, rfc3339, rfc3339_us, to_us

offsets = st.integers(-14 * 3600, 14 * 3600).map(lambda s: timezone(timedelta(seconds=s)))


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC),
    ),
    offsets,
)
def test_microseconds_round_trip_whatever_the_offset(moment: datetime, zone: timezone) -> None:
    us = to_us(moment.astimezone(zone))
    assert us == (moment - EPOCH) // timedelta(microseconds=1)
    assert from_us(us) == moment


def test_naive_instants_are_refused_and_utc_is_written_with_z() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        to_us(datetime(2026, 1, 1))
    assert (
        rfc3339(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
        == "2026-01-01T00:00:00Z"
    )


# --- RFC 3339, and nothing else -------------------------------------------------------------

_UNIX_DAY = date(1970, 1, 1)
_CYCLE_DAYS = 146_097  # 400 Gregorian years


def _days_since_1970(year: int, month: int, day: int) -> int:
    if year < 400:  # `date` starts at year 1; the calendar repeats every 400 years
        return (date(year + 400, month, day) - _UNIX_DAY).days - _CYCLE_DAYS
    return (date(year, month, day) - _UNIX_DAY).days


def _days_in(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, int | None]:
    """An RFC 3339 date-time or a near miss, with the instant it denotes (None: not RFC 3339).

    The oracle is RFC 3339 §5.6 read field by field, apart from the parser's regular expression."""

    def mostly(low: int, high: int, beyond: int) -> int:  # in range three times in four
        return draw(
            st.integers(low, high)
            | st.integers(low, high)
            | st.integers(low, high)
            | st.integers(0, beyond)
        )

    year = draw(st.integers(0, 9999))
    month, day = mostly(1, 12, 13), mostly(1, 31, 32)
    hour, minute, second = mostly(0, 23, 25), mostly(0, 59, 61), mostly(0, 60, 61)
    fraction = draw(st.none() | st.text("0123456789", min_size=0, max_size=12))
    separator = draw(st.sampled_from(["T"] * 4 + ["t"] * 2 + [" ", "_", "\x00", "TT", ""]))
    offset_kind = draw(
        st.sampled_from(["Z"] * 3 + ["z"] + ["numeric"] * 4 + ["none", "seconds", "basic", "hour"])
    )
    sign = draw(st.sampled_from("+-"))
    off_hour, off_minute = mostly(0, 23, 25), mostly(0, 59, 61)
    offset = {
        "Z": "Z",
        "z": "z",
        "numeric": f"{sign}{off_hour:02d}:{off_minute:02d}",
        "none": "",
        "seconds": f"{sign}{off_hour:02d}:{off_minute:02d}:30",
        "basic": f"{sign}{off_hour:02d}{off_minute:02d}",
        "hour": f"{sign}{off_hour:02d}",
    }[offset_kind]
    date_part = f"{year:04d}-{month:02d}-{day:02d}"
    time_part = f"{hour:02d}:{minute:02d}:{second:02d}"
    shape = draw(
        st.sampled_from(["full"] * 12 + ["basic", "week", "short year", "hour only", "no seconds"])
    )
    if shape == "basic":
        date_part, time_part = date_part.replace("-", ""), time_part.replace(":", "")
    elif shape == "week":
        date_part = f"{year:04d}-W{month:02d}-{day % 8}"
    elif shape == "short year":
        date_part = f"{year % 1000:03d}-{month:02d}-{day:02d}"
    elif shape == "hour only":
        time_part = f"{hour:02d}"
    elif shape == "no seconds":
        time_part = f"{hour:02d}:{minute:02d}"
    text = f"{date_part}{separator}{time_part}{'' if fraction is None else '.' + fraction}{offset}"
    if draw(st.integers(0, 19)) == 0:  # an Arabic-Indic digit, or a stray space or line end
        spot = draw(st.integers(0, len(text)))
        text = text[:spot] + draw(st.sampled_from(["\u0663", " ", "\n", "+"])) + text[spot:]
        return text, None
    valid = (
        shape == "full"
        and separator in ("T", "t")
        and 1 <= month <= 12
        and 1 <= day <= _days_in(year, month)
        and hour <= 23
        and minute <= 59
        and second <= 60
        and fraction != ""
        and (
            offset_kind in ("Z", "z")
            or (offset_kind == "numeric" and off_hour <= 23 and off_minute <= 59)
        )
    )
    if not valid:
        return text, None
    offset_minutes = (
        0 if offset_kind != "numeric" else (off_hour * 60 + off_minute) * (1 if sign == "+" else -1)
    )
    micro = int((fraction or "")[:6].ljust(6, "0"))
    seconds = (
        _days_since_1970(year, month, day) * 86_400
        + hour * 3600
        + minute * 60
        + second
        - offset_minutes * 60
    )
    return text, seconds * 1_000_000 + micro


@settings(max_examples=500)
@given(timestamps())
def test_exactly_rfc3339_date_times_are_read_and_each_as_the_instant_it_denotes(
    case: tuple[str, int | None],
) -> None:
    text, denoted = case
    try:
        read = rfc3339_us(text)
    except ValueError:
        read = None
    assert read == denoted, text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-W10-2T09:00:00Z", "not an RFC 3339 timestamp"),
        ("20260310T090000Z", "not an RFC 3339 timestamp"),
        ("2026-03-10T01Z", "not an RFC 3339 timestamp"),
        ("2026-03-10T09:00:00+01:00:30", "not an RFC 3339 timestamp"),
        ("2026-03-10\x0009:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-03-10 09:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-03-10T09:00:00Z\n", "not an RFC 3339 timestamp"),
        ("2026-03-10T09:00:00", "must carry a UTC offset (e.g. 2026-01-01T10:00:00Z)"),
        ("2026-02-29T09:00:00Z", "not an RFC 3339 timestamp: 2026-02 has no day 29"),
        ("2026-03-10T24:00:00Z", "not an RFC 3339 timestamp: 24:00:00 is not a time of day"),
        ("2026-03-10T09:00:00+24:00", "not an RFC 3339 timestamp: +24:00 is not a UTC offset"),
    ],
)
def test_what_iso_8601_or_python_would_also_read_is_refused_with_the_reason(
    text: str, reason: str
) -> None:
    with pytest.raises(ValueError) as refused:
        rfc3339_us(text)
    assert str(refused.value) == reason


def test_lower_case_long_fractions_and_leap_seconds_are_read() -> None:
    base = to_us(datetime(2026, 3, 10, 9, tzinfo=UTC))
    assert rfc3339_us("2026-03-10t09:00:00z") == base
    assert (
        rfc3339_us("2026-03-10T10:00:00+01:00") == rfc3339_us("2026-03-10T09:00:00-00:00") == base
    )
    # Digits past the microsecond are dropped, never rounded into the next second.
    assert rfc3339_us("2026-03-10T09:00:00.123456999Z") == base + 123_456
    assert rfc3339_us("2026-03-10T08:59:59.9999999Z") == base - 1
    # A leap second is the first second of the next minute, as Unix time counts it.
    assert rfc3339_us("2016-12-31T23:59:60Z") == to_us(datetime(2017, 1, 1, tzinfo=UTC))
