"""The shared value types and the one definition of a complete device-day."""

from __future__ import annotations

import pytest

from harvester.models import is_complete_day


@pytest.mark.parametrize(
    ("stored", "server_count", "windows_failed", "complete"),
    [
        (7200, 7200, 0, True),
        (7199, 7200, 0, False),
        (7201, 7200, 0, False),
        (7200, 7200, 1, False),
        (0, 0, 0, False),
    ],
)
def test_a_day_is_complete_when_stored_equals_a_positive_count_and_nothing_failed(
    stored: int, server_count: int, windows_failed: int, complete: bool
) -> None:
    """Complete means every counted record is stored, the server counts some, and no window
    of the day failed; a day the server counts nothing for is 'no data', never complete."""
    assert is_complete_day(stored, server_count, windows_failed) is complete
