"""Unit tests of the records-to-wire conversions that do their own arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from coordinator.wire import timestamp

# Any offset a timestamptz may come back in, whole minutes within a day.
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), offsets),
)
def test_timestamp_equals_the_protobuf_conversion(value: datetime, zone: timezone | None) -> None:
    if zone is not None:
        value = value.replace(tzinfo=zone)
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)  # a naive time is UTC, as in ours
    assert timestamp(value) == expected
