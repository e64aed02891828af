"""What one event means to a meter: the keys its streams are stored under."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quotameter.meters.model import stream_key

# Mostly the join and the escape characters, so that collisions would be found if there were any.
keys = st.text(alphabet=st.sampled_from(["\x01", "\x02", "x", "y", "\\", "é"]), max_size=8)


@given(keys, keys, keys, keys)
def test_distinct_merge_and_stream_keys_never_share_a_stream_key(
    m1: str, s1: str, m2: str, s2: str
) -> None:
    if (m1, s1) != (m2, s2):
        assert stream_key(m1, s1) != stream_key(m2, s2)


@given(st.text(alphabet=st.characters(blacklist_characters="\x01\x02")), st.text())
def test_a_merge_key_without_the_join_or_the_escape_is_joined_as_before(
    merge: str, stream: str
) -> None:
    assert stream_key(merge, stream) == f"{merge}\x01{stream}"  # the keys stored so far stay valid
