"""Decoding the API's wire formats: Retry-After, JWT claims, available-date entries."""

from __future__ import annotations

import base64
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester.api.wire import (
    day_entry,
    is_int,
    jwt_claims,
    last_records_ms,
    number,
    parse_retry_after,
    short_json,
)
from harvester.errors import ShapeError


def test_parse_retry_after_edge_cases() -> None:
    """Seconds and HTTP-dates parse; past dates wait 0; negative, NaN and junk give None."""
    now = dt.datetime(2024, 2, 5, 12, tzinfo=dt.UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 3 ", now) == 3.0
    assert parse_retry_after("Mon, 05 Feb 2024 12:01:30 GMT", now) == 90.0
    assert parse_retry_after("Mon, 05 Feb 2024 11:00:00 GMT", now) == 0.0
    for junk in (None, "", "-5", "nan", "inf", "tomorrow", "Mon, 99 Foo 2024"):
        assert parse_retry_after(junk, now) is None


def test_jwt_claims_are_read_without_verification() -> None:
    """The payload of a three-part token is decoded; anything else gives None."""
    payload = base64.urlsafe_b64encode(orjson.dumps({"exp": 20, "iat": 10})).rstrip(b"=")
    assert jwt_claims(f"h.{payload.decode()}.sig") == {"exp": 20, "iat": 10}
    assert jwt_claims("not-a-jwt") is None
    assert jwt_claims("h.%%%.sig") is None
    listed = base64.urlsafe_b64encode(b"[1]").decode()
    assert jwt_claims(f"h.{listed}.sig") is None


def test_number_refuses_booleans_and_text() -> None:
    """Only JSON numbers are numbers; True is not 1 here."""
    assert number(3) == 3.0
    assert number(2.5) == 2.5
    assert number(True) is None
    assert number("3") is None


def test_day_entry_reads_the_documented_shape() -> None:
    """A Mongo-style {_id: {year, month, day}, count, date} entry becomes the day's ordinal,
    its count and its last record's text."""
    entry = day_entry(
        {"_id": {"year": 2023, "month": 9, "day": 29}, "count": 7, "date": "2023-09-29T23:59:00Z"}
    )
    assert entry == (dt.date(2023, 9, 29).toordinal(), 7, "2023-09-29T23:59:00Z")


@pytest.mark.parametrize(
    "texts",
    [
        ["2023-09-29T23:59:00.000Z", "2023-09-30T00:00:01.5Z"],
        ["2023-09-29T18:59:00-05:00", "2023-09-30T05:30:01.500+05:30"],
        ["2023-09-29 23:59:00", "2023-09-30T00:00:01.500"],
        ["2023-09-29T23:59:00Z", "2023-09-30 00:00:01.500", "2023-09-30T05:30:01.5+05:30"],
        ["2023-09-29T23:59:00.000999Z", "2023-09-30T00:00:01.500999Z"],
    ],
)
def test_last_records_ms_reads_every_iso_style_alone_or_mixed(texts: list[str]) -> None:
    """Zoned, offset, unzoned (UTC) and mixed lists all give the same instants, to the
    millisecond (digits beyond are dropped)."""
    millis = last_records_ms(texts)
    expected = [dt.datetime.fromisoformat(t.replace(" ", "T")) for t in texts]
    expected = [e if e.tzinfo else e.replace(tzinfo=dt.UTC) for e in expected]
    assert millis.tolist() == [int(e.timestamp() * 1000) for e in expected]


def test_last_records_ms_names_a_text_that_is_not_a_time() -> None:
    """One bad timestamp among good ones is a ShapeError quoting it."""
    with pytest.raises(ShapeError, match="yesterday"):
        last_records_ms(["2023-09-29T23:59:00Z", "yesterday"])


@pytest.mark.parametrize(
    "item",
    [
        {"count": 1, "date": "2023-09-29T00:00:00Z"},
        {"_id": {"year": 2023, "month": 9, "day": True}, "count": 1, "date": "2023-09-29"},
        {"_id": {"year": 2023, "month": 2, "day": 30}, "count": 1, "date": "2023-02-28"},
        {"_id": {"year": 2023, "month": 9, "day": 29}, "count": -1, "date": "2023-09-29"},
        {"_id": {"year": 2023, "month": 9, "day": 29}, "count": 1, "date": 5},
        {"_id": {"year": 2023, "month": 9, "day": 29}, "count": 2**63, "date": "2023-09-29"},
    ],
)
def test_day_entry_refuses_malformed_entries(item: dict[str, object]) -> None:
    """Every malformed entry raises an error the client turns into a ShapeError (a text that
    is no time: ``last_records_ms``)."""
    with pytest.raises((TypeError, ValueError)):
        day_entry(item)


def _day_entry_by_the_rules(item: Mapping[str, Any]) -> tuple[int, int, str]:
    """``day_entry`` spelled out check by check: the rules its fast path must keep."""
    key, count, last = item.get("_id"), item.get("count"), item.get("date")
    if not isinstance(key, dict):
        raise TypeError("no '_id' object")
    year, month, day_of_month = (key.get(k) for k in ("year", "month", "day"))
    if not (is_int(year) and is_int(month) and is_int(day_of_month)):
        raise TypeError("'_id' needs integer year, month and day")
    day = dt.date(year, month, day_of_month)
    if not is_int(count) or not 0 <= count < 2**63:
        raise TypeError("'count' is not a non-negative 64-bit integer")
    if not isinstance(last, str):
        raise TypeError("'date' is not a timestamp string")
    return day.toordinal(), count, last


class _Level(enum.IntEnum):
    """An ``int`` that is not exactly ``int``: what a caller other than JSON might pass."""

    THIRD = 3


def _outcome(item: Mapping[str, Any]) -> object:
    try:
        return _day_entry_by_the_rules(item)
    except (TypeError, ValueError, OverflowError) as exc:
        return type(exc), str(exc)


_NUMBERISH = st.one_of(
    st.integers(-5, 40),
    st.integers(1, 12),
    st.integers(1900, 2100),
    st.integers(2**62, 2**64),
    st.booleans(),
    st.floats(allow_nan=False, max_value=3000, min_value=-1),
    st.none(),
    st.text(max_size=3),
    st.just(_Level.THIRD),
)


@given(
    year=_NUMBERISH,
    month=_NUMBERISH,
    day=_NUMBERISH,
    count=_NUMBERISH,
    date=st.one_of(st.text(max_size=5), st.integers(), st.none()),
    keyed=st.booleans(),
)
def test_day_entry_decides_every_entry_as_its_rules_say(
    year: object, month: object, day: object, count: object, date: object, keyed: bool
) -> None:
    """Whatever the entry holds, ``day_entry`` returns what the rules return, or raises the
    same error with the same message (the one line the client quotes): booleans, floats,
    texts, ``int`` subclasses, impossible dates and out-of-range counts alike."""
    ident = {"year": year, "month": month, "day": day} if keyed else [year, month, day]
    item = {"_id": ident, "count": count, "date": date}
    try:
        found: object = day_entry(item)
    except (TypeError, ValueError, OverflowError) as exc:
        found = type(exc), str(exc)
    assert found == _outcome(item)


def test_short_json_is_bounded() -> None:
    """Error excerpts of values stay one short line."""
    assert short_json({"a": 1}) == '{"a":1}'
    assert len(short_json("x" * 500)) == 121
