"""Closed-form counting over activity intervals agrees with enumerating every record."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from harvester.simulator.timeline import Timeline

intervals = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(1, 800)), min_size=0, max_size=6
).map(lambda pairs: _disjoint(pairs))


def _disjoint(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result, cursor = [], 0
    for gap, length in pairs:
        start = cursor + gap
        result.append((start, start + length))
        cursor = start + length
    return result


def _all_times(spans: list[tuple[int, int]], cadence: int) -> list[int]:
    return [t for a, b in spans for t in range(a, b) if t % cadence == 0]


@given(intervals, st.integers(1, 97), st.lists(st.integers(-50, 40_000), max_size=8))
def test_count_and_last_before_match_enumeration(
    spans: list[tuple[int, int]], cadence: int, probes: list[int]
) -> None:
    """``count_before`` and ``last_before`` equal brute-force answers for any probe time."""
    timeline = Timeline(spans, cadence)
    times = _all_times(spans, cadence)
    probe = np.array(probes, dtype=np.int64)
    assert timeline.count_before(probe).tolist() == [sum(t < p for t in times) for p in probes]
    expected_last = [max((t for t in times if t < p), default=-1) for p in probes]
    assert timeline.last_before(probe).tolist() == expected_last


@given(intervals, st.integers(1, 97), st.integers(-50, 40_000), st.integers(0, 9000))
def test_times_between_is_inclusive_and_complete(
    spans: list[tuple[int, int]], cadence: int, low: int, length: int
) -> None:
    """``times_between`` returns exactly the record times in ``[low, high]``, ascending."""
    timeline = Timeline(spans, cadence)
    expected = [t for t in _all_times(spans, cadence) if low <= t <= low + length]
    assert timeline.times_between(low, low + length).tolist() == expected
