"""Tests of harvester.inspect.verify's day bucketing (the comparison itself runs end to end in
test_end_to_end and test_month_archive)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.inspect.verify import day_counts, utc_day_counts

# 1900 .. 2100 in milliseconds: before the epoch too, where a truncating division would put a
# date on the day after its own.
_MOMENTS = st.one_of(st.none(), st.integers(-2_208_988_800_000, 4_102_444_800_000))
_ZONES = ("UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham")


def _dates(millis: list[int | None]) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(millis, pa.timestamp("ms", tz="UTC"))])


def _expected(millis: list[int | None], zone: ZoneInfo) -> Counter[dt.date]:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return Counter(
        (epoch + dt.timedelta(milliseconds=ms)).astimezone(zone).date()
        for ms in millis
        if ms is not None
    )


@settings(max_examples=150, deadline=None)
@given(millis=st.lists(_MOMENTS, max_size=60), zone=st.sampled_from(_ZONES))
def test_dates_are_counted_on_their_day_of_the_zone(millis: list[int | None], zone: str) -> None:
    """Each non-null date counts once, on its calendar day in the zone (UTC by integer
    division, other zones by their local time: DST and half- and quarter-hour offsets)."""
    assert day_counts(_dates(millis), ZoneInfo(zone)) == _expected(millis, ZoneInfo(zone))


@given(millis=st.lists(_MOMENTS, max_size=60))
def test_utc_days_come_ascending_with_their_counts(millis: list[int | None]) -> None:
    """utc_day_counts gives each UTC day once, ascending, as a date ordinal with its count."""
    days, counts = utc_day_counts(_dates(millis))
    assert days.tolist() == sorted(set(days.tolist()))
    found = {dt.date.fromordinal(d): c for d, c in zip(days.tolist(), counts.tolist(), strict=True)}
    assert found == dict(_expected(millis, ZoneInfo("UTC")))
