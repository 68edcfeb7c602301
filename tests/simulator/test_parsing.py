"""The API's loose date strings."""

from __future__ import annotations

import datetime as dt

import pytest

from harvester.simulator.parsing import parse_api_time, parse_instant

MIDNIGHT_FEB_6 = int(dt.datetime(2024, 2, 6, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(
    "text", ["2024-02-06 00:00:00", "2024-2-6 0:00:00", "2024-02-05 24:00:00", "2024-2-6T0:0:0Z"]
)
def test_vendor_spellings_of_the_same_instant(text: str) -> None:
    """Padded, unpadded and hour-24 spellings name the same second."""
    assert parse_api_time(text) == MIDNIGHT_FEB_6


@pytest.mark.parametrize(
    "text", ["", "2024-02-06", "2024-02-30 00:00:00", "2024-02-05 24:00:01", "x", None, 5]
)
def test_unparsable_api_times_are_none(text: object) -> None:
    """Anything else is refused."""
    assert parse_api_time(text) is None


def test_instants_read_iso_8601_and_default_to_utc() -> None:
    """``parse_instant`` reads offsets and Z; naive means UTC; junk is None."""
    expected = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert parse_instant("2024-01-02T03:04:05Z") == expected
    assert parse_instant("2024-01-02T04:04:05+01:00") == expected
    assert parse_instant("2024-01-02T03:04:05") == expected
    assert parse_instant("soon") is None
