"""The UTC two-hour window grid, local-day ranges, clipping and the API's time formats. PURE.

Every window the harvester fetches lies inside one slot of a fixed grid: the twelve slots
``[00:00, 02:00)`` … ``[22:00, 24:00)`` of each UTC day. ``--since``/``--until`` are local
calendar days (read in ``--timezone``); they become a half-open UTC span whose edges can fall
anywhere (DST days last 23 or 25 hours, some zones are offset by 30 or 45 minutes). A range
edge clips the slot it falls in; it never shifts the grid.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo

from harvester.errors import ShapeError
from harvester.models import WINDOW

UTC: Final = dt.UTC
SLOTS_PER_DAY: Final = 12
DAY: Final = dt.timedelta(days=1)

# Wider than any UTC offset (±14 h) plus a day, so the search below always brackets the answer.
_SEARCH_MARGIN_S: Final = 40 * 3600


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC day as a half-open span ``[day 00:00, day+1 00:00)``."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + DAY


def grid_slots(day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
    """The day's twelve two-hour UTC slots, in order."""
    start, _ = day_bounds(day)
    return [(start + i * WINDOW, start + (i + 1) * WINDOW) for i in range(SLOTS_PER_DAY)]


def local_date_of(t: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The calendar day that the instant ``t`` falls on in the zone ``tz``."""
    return t.astimezone(tz).date()


def start_of_local_day(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The first instant (UTC) whose local date in ``tz`` is ``day``.

    Usually local midnight. Where a DST change skips midnight (America/Santiago,
    America/Havana, Asia/Beirut at times) the day begins when the gap ends, e.g. 01:00;
    where clocks fall back across midnight the first of the two midnights wins.
    """
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    as_utc = midnight.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) == midnight.replace(tzinfo=None):
        return as_utc
    # Midnight does not exist: find the end of the gap, the first second whose local date is
    # ``day``. Local dates only move forward here (a fall-back across midnight would have made
    # midnight exist), so a bisection on whole seconds finds it; zone transitions fall on
    # whole seconds.
    naive_epoch = int(dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    before, after = naive_epoch - _SEARCH_MARGIN_S, naive_epoch + _SEARCH_MARGIN_S
    while after - before > 1:
        middle = (before + after) // 2
        if dt.datetime.fromtimestamp(middle, tz).date() >= day:
            after = middle
        else:
            before = middle
    return dt.datetime.fromtimestamp(after, UTC)


def local_days_to_utc(
    since: dt.date | None, until: dt.date | None, tz: ZoneInfo
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Inclusive local days ``since``…``until`` as the UTC span ``[lo, hi)``.

    ``lo`` is the start of local day ``since``, ``hi`` the start of the local day after
    ``until``. ``None`` stays ``None``: that end of the range is open.
    """
    lo = start_of_local_day(since, tz) if since is not None else None
    hi = start_of_local_day(until + dt.timedelta(days=1), tz) if until is not None else None
    return lo, hi


def day_overlaps(day: dt.date, lo: dt.datetime | None, hi: dt.datetime | None) -> bool:
    """True when some instant of the UTC ``day`` lies inside ``[lo, hi)``."""
    start, end = day_bounds(day)
    return (lo is None or end > lo) and (hi is None or start < hi)


def clip_windows(
    day: dt.date, lo: dt.datetime | None, hi: dt.datetime | None
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The day's grid slots intersected with ``[lo, hi)``, in order.

    A slot that straddles an edge is cut at the edge, never moved; slots outside the range
    are dropped.
    """
    pieces = []
    for slot_start, slot_end in grid_slots(day):
        start = slot_start if lo is None else max(slot_start, lo)
        end = slot_end if hi is None else min(slot_end, hi)
        if start < end:
            pieces.append((start, end))
    return pieces


def format_api_time(t: dt.datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, zero-padded, as the records call expects.

    Fractions of a second are dropped: grid and range edges fall on whole seconds. A naive
    datetime is read as UTC, like everything else in the harvester.
    """
    u = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d} {u.hour:02d}:{u.minute:02d}:{u.second:02d}"


def parse_iso_utc(s: str) -> dt.datetime:
    """An API timestamp such as ``2024-02-05T22:00:01.000Z`` as an aware UTC datetime.

    Accepts with or without fractions, ``Z`` or a numeric offset; a timestamp without an
    offset is read as UTC. Anything else is a ``ShapeError``: the server sent a body that is
    not the documented shape.
    """
    try:
        parsed = dt.datetime.fromisoformat(s)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"not an ISO-8601 timestamp: {s!r:.80}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
