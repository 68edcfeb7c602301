"""Reading the request fields the vendor document leaves loose."""

from __future__ import annotations

import calendar
import datetime as dt
import re

_API_TIME = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d{1,6})?Z?\s*$"
)


def parse_api_time(text: object) -> int | None:
    """Epoch second of a ``YYYY-MM-DD HH:MM:SS`` UTC time, or None when unparsable.

    Accepts what the vendor's examples send: zero-padded or not (``2024-2-5 2:00:00``), and
    hour 24 at exactly ``24:00:00`` for the next midnight (``2024-02-05 24:00:00``).
    """
    if not isinstance(text, str):
        return None
    match = _API_TIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    if hour == 24 and minute == 0 and second == 0:
        hour, extra_day = 0, 1
    else:
        extra_day = 0
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        return None
    return calendar.timegm(moment.timetuple()) + extra_day * 86_400


def parse_instant(text: object) -> dt.datetime | None:
    """An ISO-8601 instant (naive means UTC) as aware UTC, or None when unparsable."""
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
