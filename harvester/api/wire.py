"""PURE  Decoding the API's small wire formats: Retry-After, JWT claims, available-date entries.

The client (the aiohttp boundary) calls these and turns their ``ValueError``/``TypeError`` into
the project's ``ShapeError``; keeping them here keeps them testable without a server.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeGuard

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from harvester.plan.windows import parse_iso_utc

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, (when - now).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The JWT payload, decoded without verification (we only read ``exp``/``iat``)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def day_entry(item: Mapping[str, Any]) -> tuple[int, int, str]:
    """One ``{"_id": {year, month, day}, "count", "date"}`` entry of the available dates, as
    ``(date.toordinal(), count, last record's timestamp text)``; see ``last_records_ms``.

    Called once per entry (a large fleet's discovery reads 1.4 million): plain ``int`` values,
    what JSON gives, are recognised by their type alone before ``is_int`` is asked.
    Raises ``TypeError``/``ValueError`` naming the fault.
    """
    key, count, last = item.get("_id"), item.get("count"), item.get("date")
    if not isinstance(key, dict):
        raise TypeError("no '_id' object")
    year, month, day_of_month = key.get("year"), key.get("month"), key.get("day")
    if not (type(year) is int and type(month) is int and type(day_of_month) is int) and not (
        is_int(year) and is_int(month) and is_int(day_of_month)
    ):
        raise TypeError("'_id' needs integer year, month and day")
    ordinal = dt.date(year, month, day_of_month).toordinal()
    if not (type(count) is int or is_int(count)) or not 0 <= count < 2**63:
        raise TypeError("'count' is not a non-negative 64-bit integer")
    if not isinstance(last, str):
        raise TypeError("'date' is not a timestamp string")
    return ordinal, count, last


def last_records_ms(texts: Sequence[str]) -> npt.NDArray[np.int64]:
    """ISO-8601 timestamps as milliseconds since the epoch, UTC where unzoned.

    A fleet's availability is over a million timestamps: Arrow reads a list of one style at
    once, and only a list it refuses (unzoned, mixed styles) is read one by one. Raises
    ``ShapeError`` naming a timestamp that is not ISO-8601.
    """
    try:
        stamps = pa.array(texts, pa.string()).cast(pa.timestamp("ms", "UTC"), safe=False)
        millis: npt.NDArray[np.int64] = stamps.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return millis
    except pa.ArrowInvalid:
        return np.array([(parse_iso_utc(text) - _EPOCH) // _MS for text in texts], np.int64)


def short_json(value: object) -> str:
    """At most 120 characters of ``value`` as JSON, for one-line error messages."""
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 120 else text[:120] + "…"
