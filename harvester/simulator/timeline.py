"""When a device has records: aligned times inside disjoint activity intervals.

A device's records sit at every multiple of the cadence inside its activity intervals
(half-open ``[a, b)`` in epoch seconds, both ends multiples of the cadence), and never after
the simulated present. Counting and finding "the last record before t" are closed-form over
the intervals, so available dates for years of one-second data cost microseconds, and
records are only materialised for the window actually asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class Timeline:
    """The record times of one device."""

    def __init__(self, intervals: Sequence[tuple[int, int]], cadence_s: int) -> None:
        self.cadence = cadence_s
        aligned = [
            (-(-a // cadence_s) * cadence_s, -(-b // cadence_s) * cadence_s) for a, b in intervals
        ]
        kept = sorted((a, b) for a, b in aligned if b > a)
        self.starts: IntArray = np.array([a for a, _ in kept], dtype=np.int64)
        self.ends: IntArray = np.array([b for _, b in kept], dtype=np.int64)
        sizes = (self.ends - self.starts) // cadence_s
        #: ``before[k]``: how many records lie in the intervals ahead of interval ``k``.
        self.before: IntArray = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)

    @property
    def first(self) -> int | None:
        """Time of the first record ever (ignoring the present), or None for no data."""
        return int(self.starts[0]) if len(self.starts) else None

    def count_before(self, times: IntArray) -> IntArray:
        """Number of records strictly before each of ``times``."""
        if not len(self.starts):
            return np.zeros(len(times), dtype=np.int64)
        k = np.searchsorted(self.starts, times, side="right") - 1
        safe = np.maximum(k, 0)
        ceil_t = -(-times // self.cadence) * self.cadence
        inside = (np.minimum(ceil_t, self.ends[safe]) - self.starts[safe]) // self.cadence
        return np.where(k < 0, 0, self.before[safe] + inside)

    def last_before(self, times: IntArray) -> IntArray:
        """Time of the last record strictly before each of ``times`` (-1 where none)."""
        if not len(self.starts):
            return np.full(len(times), -1, dtype=np.int64)
        candidate = -(-times // self.cadence) * self.cadence - self.cadence
        k = np.searchsorted(self.starts, candidate, side="right") - 1
        safe = np.maximum(k, 0)
        last = np.minimum(candidate, self.ends[safe] - self.cadence)
        return np.where(k < 0, -1, last)

    def times_between(self, low: int, high: int) -> IntArray:
        """Record times ``t`` with ``low <= t <= high``, ascending."""
        c = self.cadence
        first = np.searchsorted(self.ends, low, side="right")
        last = np.searchsorted(self.starts, high, side="right")
        pieces = []
        for k in range(int(first), int(last)):
            lo = max(int(self.starts[k]), -(-low // c) * c)
            hi = min(int(self.ends[k]) - c, (high // c) * c)
            if hi >= lo:
                pieces.append(np.arange(lo, hi + c, c, dtype=np.int64))
        if not pieces:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(pieces)
