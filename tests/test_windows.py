"""The UTC window grid, local-day ranges, clipping and the API time formats."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.errors import ShapeError
from harvester.models import WINDOW
from harvester.plan.windows import (
    SLOTS_PER_DAY,
    clip_windows,
    day_bounds,
    day_overlaps,
    format_api_time,
    grid_slots,
    local_date_of,
    local_days_to_utc,
    parse_iso_utc,
    start_of_local_day,
)

UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)

# Whole-hour, half-hour and 45-minute offsets; DST at 02:00, at midnight (Santiago) and of 30
# minutes (Lord Howe); southern-hemisphere DST.
ZONES = [
    "UTC",
    "America/Chicago",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Australia/Adelaide",
    "Pacific/Chatham",
    "America/Santiago",
    "Australia/Lord_Howe",
]

zones = st.sampled_from(ZONES).map(ZoneInfo)
local_days = st.dates(min_value=dt.date(1970, 1, 2), max_value=dt.date(2100, 12, 1))


@st.composite
def local_ranges(
    draw: st.DrawFn,
) -> tuple[ZoneInfo, dt.date | None, dt.date | None, dt.datetime | None, dt.datetime | None]:
    """A zone, an inclusive local-day range (either end may be open) and its UTC span."""
    tz = draw(zones)
    since = draw(local_days)
    until = since + dt.timedelta(days=draw(st.integers(0, 40)))
    since_or_open = draw(st.sampled_from([since, since, None]))
    until_or_open = draw(st.sampled_from([until, until, None]))
    lo, hi = local_days_to_utc(since_or_open, until_or_open, tz)
    return tz, since_or_open, until_or_open, lo, hi


def _offset_just_before(t: dt.datetime, tz: ZoneInfo) -> dt.timedelta:
    offset = (t - SECOND).astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _on_grid(t: dt.datetime) -> bool:
    return t.hour % 2 == 0 and t.minute == 0 and t.second == 0 and t.microsecond == 0


def test_grid_slots_are_twelve_two_hour_slots_of_the_utc_day() -> None:
    """A UTC day has 12 contiguous two-hour slots from 00:00 to the next midnight."""
    day = dt.date(2024, 2, 5)
    slots = grid_slots(day)
    start, end = day_bounds(day)
    assert len(slots) == SLOTS_PER_DAY
    assert slots[0][0] == start == dt.datetime(2024, 2, 5, tzinfo=UTC)
    assert slots[-1] == (dt.datetime(2024, 2, 5, 22, tzinfo=UTC), end)
    assert end == dt.datetime(2024, 2, 6, tzinfo=UTC)
    assert all(b - a == WINDOW for a, b in slots)
    assert all(slots[i][1] == slots[i + 1][0] for i in range(len(slots) - 1))


def test_chicago_fall_back_day_is_25_hours() -> None:
    """`--since 2024-11-03 --until 2024-11-03` in America/Chicago spans 25 hours from 05:00 UTC."""
    lo, hi = local_days_to_utc(
        dt.date(2024, 11, 3), dt.date(2024, 11, 3), ZoneInfo("America/Chicago")
    )
    assert lo == dt.datetime(2024, 11, 3, 5, tzinfo=UTC)
    assert hi == dt.datetime(2024, 11, 4, 6, tzinfo=UTC)


def test_chicago_spring_forward_day_is_23_hours() -> None:
    """2024-03-10 in America/Chicago lasts 23 hours."""
    lo, hi = local_days_to_utc(
        dt.date(2024, 3, 10), dt.date(2024, 3, 10), ZoneInfo("America/Chicago")
    )
    assert lo is not None
    assert hi is not None
    assert hi - lo == dt.timedelta(hours=23)


@pytest.mark.parametrize(
    ("zone", "day", "expected_local_start"),
    [
        # Clocks jump from 24:00 to 01:00: the local day starts at 01:00.
        ("America/Santiago", dt.date(2022, 9, 11), dt.time(1)),
        ("America/Havana", dt.date(2023, 3, 12), dt.time(1)),
        ("Asia/Beirut", dt.date(2023, 3, 26), dt.time(1)),
        # Clocks jumped from 23:30 to 00:30: the day starts at 00:30, not at "01:00".
        ("America/Toronto", dt.date(1919, 3, 31), dt.time(0, 30)),
        # An ordinary midnight.
        ("Asia/Kathmandu", dt.date(2024, 6, 1), dt.time(0)),
    ],
)
def test_local_day_starts_at_its_first_instant_when_dst_skips_midnight(
    zone: str, day: dt.date, expected_local_start: dt.time
) -> None:
    """Where a DST change skips midnight, the local day starts when the gap ends."""
    tz = ZoneInfo(zone)
    start = start_of_local_day(day, tz)
    assert start.tzinfo is not None
    assert start.utcoffset() == dt.timedelta(0)
    local = start.astimezone(tz)
    assert local.date() == day
    assert local.time() == expected_local_start
    assert local_date_of(start - SECOND, tz) == day - dt.timedelta(days=1)


def test_a_local_day_that_never_happened_is_empty() -> None:
    """Samoa skipped 2011-12-30: that local day is an empty span, its neighbours still abut."""
    tz = ZoneInfo("Pacific/Apia")
    lo, hi = local_days_to_utc(dt.date(2011, 12, 30), dt.date(2011, 12, 30), tz)
    assert lo == hi
    lo_wide, hi_wide = local_days_to_utc(dt.date(2011, 12, 29), dt.date(2011, 12, 31), tz)
    assert lo_wide is not None
    assert hi_wide is not None
    assert hi_wide - lo_wide == dt.timedelta(hours=48)


def test_open_ends_stay_open() -> None:
    """A missing --since or --until leaves that end of the UTC span open (None)."""
    tz = ZoneInfo("Asia/Kolkata")
    assert local_days_to_utc(None, None, tz) == (None, None)
    lo, hi = local_days_to_utc(dt.date(2024, 1, 1), None, tz)
    assert lo == dt.datetime(2023, 12, 31, 18, 30, tzinfo=UTC)
    assert hi is None


def test_clip_cuts_edge_slots_without_shifting_the_grid() -> None:
    """A +5:30 range edge cuts its slot at :30 and keeps the following slots on the grid."""
    lo, hi = local_days_to_utc(dt.date(2024, 1, 2), dt.date(2024, 1, 2), ZoneInfo("Asia/Kolkata"))
    first_day = clip_windows(dt.date(2024, 1, 1), lo, hi)
    assert first_day == [
        (dt.datetime(2024, 1, 1, 18, 30, tzinfo=UTC), dt.datetime(2024, 1, 1, 20, tzinfo=UTC)),
        (dt.datetime(2024, 1, 1, 20, tzinfo=UTC), dt.datetime(2024, 1, 1, 22, tzinfo=UTC)),
        (dt.datetime(2024, 1, 1, 22, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)),
    ]
    second_day = clip_windows(dt.date(2024, 1, 2), lo, hi)
    assert second_day[-1] == (
        dt.datetime(2024, 1, 2, 18, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 18, 30, tzinfo=UTC),
    )
    assert len(second_day) == 10
    assert clip_windows(dt.date(2024, 1, 3), lo, hi) == []


def test_day_overlaps_is_half_open() -> None:
    """A day touching the range only at its exclusive end does not overlap it."""
    lo = dt.datetime(2024, 1, 2, tzinfo=UTC)
    hi = dt.datetime(2024, 1, 3, tzinfo=UTC)
    assert not day_overlaps(dt.date(2024, 1, 1), lo, hi)
    assert day_overlaps(dt.date(2024, 1, 2), lo, hi)
    assert not day_overlaps(dt.date(2024, 1, 3), lo, hi)
    assert day_overlaps(dt.date(1999, 1, 3), None, hi)
    assert day_overlaps(dt.date(2099, 1, 3), lo, None)


@settings(max_examples=300, deadline=None)
@given(data=local_ranges(), pick=st.integers(0, 3), shift=st.integers(-2, 2), any_day=local_days)
def test_clipped_pieces_tile_the_day_inside_the_range(
    data: tuple[ZoneInfo, dt.date | None, dt.date | None, dt.datetime | None, dt.datetime | None],
    pick: int,
    shift: int,
    any_day: dt.date,
) -> None:
    """Pieces tile day ∩ [lo, hi) exactly, each inside one slot, on the grid except at lo/hi."""
    _, _, _, lo, hi = data
    anchors = [lo.date() if lo else any_day, hi.date() if hi else any_day, any_day, any_day]
    day = anchors[pick] + dt.timedelta(days=shift)
    pieces = clip_windows(day, lo, hi)
    day_start, day_end = day_bounds(day)
    want_start = day_start if lo is None else max(day_start, lo)
    want_end = day_end if hi is None else min(day_end, hi)
    if want_start >= want_end:
        assert pieces == []
        assert not day_overlaps(day, lo, hi)
        return
    assert day_overlaps(day, lo, hi)
    assert pieces[0][0] == want_start
    assert pieces[-1][1] == want_end
    for (_, end), (next_start, _) in itertools.pairwise(pieces):
        assert end == next_start
    slots = grid_slots(day)
    for start, end in pieces:
        assert start < end <= start + WINDOW
        assert any(s <= start and end <= e for s, e in slots)
        assert _on_grid(start) or start == lo
        assert _on_grid(end) or end == hi


@settings(max_examples=300, deadline=None)
@given(tz=zones, since=local_days, extra=st.integers(0, 3))
def test_local_day_spans_have_the_length_of_their_offsets_and_abut(
    tz: ZoneInfo, since: dt.date, extra: int
) -> None:
    """A local day lasts 24 h minus its offset change; consecutive days and ranges abut."""
    until = since + dt.timedelta(days=extra)
    lo, hi = local_days_to_utc(since, until, tz)
    assert lo is not None
    assert hi is not None
    assert local_date_of(lo, tz) == since
    assert local_date_of(lo - SECOND, tz) == since - dt.timedelta(days=1)
    assert local_date_of(hi - SECOND, tz) == until
    assert local_date_of(hi, tz) == until + dt.timedelta(days=1)
    day = since
    cursor = lo
    while day <= until:
        start, end = local_days_to_utc(day, day, tz)
        assert start == cursor
        assert start is not None
        assert end is not None
        change = _offset_just_before(end, tz) - _offset_just_before(start, tz)
        assert end - start == dt.timedelta(hours=24) - change
        cursor = end
        day += dt.timedelta(days=1)
    assert cursor == hi


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (dt.datetime(2024, 2, 5, 22, tzinfo=UTC), "2024-02-05 22:00:00"),
        (dt.datetime(2024, 2, 6, tzinfo=UTC), "2024-02-06 00:00:00"),
        (dt.datetime(999, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC), "0999-01-02 03:04:05"),
        (
            dt.datetime(2024, 2, 5, 3, 30, tzinfo=ZoneInfo("Asia/Kolkata")),
            "2024-02-04 22:00:00",
        ),
        (dt.datetime(2024, 2, 5, 1, 2, 3), "2024-02-05 01:02:03"),
    ],
)
def test_format_api_time_is_zero_padded_utc(t: dt.datetime, text: str) -> None:
    """API times are UTC, `YYYY-MM-DD HH:MM:SS`, zero-padded, with no fraction."""
    assert format_api_time(t) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-02-05T22:00:01.000Z", dt.datetime(2024, 2, 5, 22, 0, 1, tzinfo=UTC)),
        ("2024-02-05T22:00:01Z", dt.datetime(2024, 2, 5, 22, 0, 1, tzinfo=UTC)),
        ("2024-02-05T22:00:01.250Z", dt.datetime(2024, 2, 5, 22, 0, 1, 250_000, tzinfo=UTC)),
        ("2024-02-05T22:00:01", dt.datetime(2024, 2, 5, 22, 0, 1, tzinfo=UTC)),
        ("2024-02-06T03:30:01+05:30", dt.datetime(2024, 2, 5, 22, 0, 1, tzinfo=UTC)),
    ],
)
def test_parse_iso_utc_reads_api_timestamps(text: str, expected: dt.datetime) -> None:
    """The API's ISO timestamps, with or without millis or Z, become aware UTC datetimes."""
    parsed = parse_iso_utc(text)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01T00:00:00Z", "2024-02-05T25:00"])
def test_parse_iso_utc_rejects_garbage_as_shape_error(text: str) -> None:
    """A timestamp that is not ISO-8601 is a ShapeError (the body is not the documented shape)."""
    with pytest.raises(ShapeError, match="ISO-8601"):
        parse_iso_utc(text)


@settings(max_examples=200, deadline=None)
@given(t=st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1)))
def test_format_then_parse_round_trips_whole_seconds(t: dt.datetime) -> None:
    """Formatting a UTC instant for the API and parsing it back loses only the fraction."""
    aware = t.replace(tzinfo=UTC)
    assert parse_iso_utc(format_api_time(aware)) == aware.replace(microsecond=0)
