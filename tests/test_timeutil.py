from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotameter.timeutil import EPOCH, from_us, rfc3339, to_us

offsets = st.integers(-14 * 3600, 14 * 3600).map(lambda s: timezone(timedelta(seconds=s)))


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)),
       offsets)
def test_microseconds_round_trip_whatever_the_offset(moment: datetime, zone: timezone) -> None:
    us = to_us(moment.astimezone(zone))
    assert us == (moment - EPOCH) // timedelta(microseconds=1)
    assert from_us(us) == moment


def test_naive_instants_are_refused_and_utc_is_written_with_z() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        to_us(datetime(2026, 1, 1))
    assert rfc3339(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == "2026-01-01T00:00:00Z"
