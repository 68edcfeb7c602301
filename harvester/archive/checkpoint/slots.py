"""Whole-slot days: the compact form of the checkpoint's finished windows.

Nearly every finished device-day of a back-fill is the same shape: its windows are whole
slots of the UTC grid ([00:00, 02:00) … [22:00, 24:00)), planned against one server count,
all sealed or none. Such a day is held as one row — a 12-bit mask of its slots, its day count,
its sealed flag — and the records of each slot in one flat array: 2 bytes a window and ~30 a
day, where the windows' own columns take ~57 bytes a window. A fleet of 1,000 devices by
5 years (17 million windows) is ~75 MB rather than ~960 MB. The other days (the edges of a
``--since``/``--until`` range, the day in progress, a window of more than 65,535 records)
stay windows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from harvester.archive.checkpoint import format as fmt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_SLOT_BITS: Final = np.arange(fmt.SLOTS_PER_DAY, dtype=np.int64)


def group_key(code: IntArray, epoch_day: IntArray) -> IntArray:
    """(uuid code, UTC day) packed into one int64 that sorts by code, then day."""
    key: IntArray = (code << 32) | (epoch_day + fmt.DAY_BIAS)
    return key


def day_key(code: int, epoch_day: int) -> int:
    """``group_key`` of one device-day."""
    return (code << 32) | (epoch_day + fmt.DAY_BIAS)


def key_code(key: IntArray) -> IntArray:
    code: IntArray = key >> 32
    return code


def key_day(key: IntArray) -> IntArray:
    """The epoch day (days since 1970-01-01) of packed keys."""
    day: IntArray = (key & 0xFFFFFFFF) - fmt.DAY_BIAS
    return day


@dataclass(frozen=True)
class Windows:
    """Finished windows as columns (codes index a uuid list held elsewhere)."""

    code: IntArray
    type_code: IntArray
    start: IntArray
    end: IntArray
    records: IntArray
    day_count: IntArray
    sealed: BoolArray

    def __len__(self) -> int:
        return len(self.start)

    @functools.cached_property
    def keys(self) -> IntArray:
        return group_key(self.code, self.start // fmt.DAY_MS)

    def take(self, at: IntArray) -> Windows:
        return Windows(*(getattr(self, name)[at] for name in WINDOW_COLUMNS))

    @staticmethod
    def concat(parts: list[Windows]) -> Windows:
        return Windows(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in WINDOW_COLUMNS)
        )


WINDOW_COLUMNS: Final = ("code", "type_code", "start", "end", "records", "day_count", "sealed")


@dataclass(frozen=True, slots=True)
class SlotDays:
    """Whole-slot days, one row each, sorted by ``keys`` (unique); see the module docstring.

    The records of day ``i``'s slots, in slot order, are
    ``window_records[first[i] : first[i] + popcount(mask[i])]``.
    """

    keys: IntArray
    type_code: npt.NDArray[np.int8]
    mask: npt.NDArray[np.uint16]
    day_count: IntArray
    sealed: BoolArray
    window_records: npt.NDArray[np.uint16]
    first: IntArray

    @staticmethod
    def empty() -> SlotDays:
        return SlotDays.build(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.bool_),
            np.zeros(0, np.int64),
        )

    @staticmethod
    def build(
        keys: npt.NDArray[np.integer],
        type_code: npt.NDArray[np.integer],
        mask: npt.NDArray[np.integer],
        day_count: npt.NDArray[np.integer],
        sealed: BoolArray,
        window_records: npt.NDArray[np.integer],
    ) -> SlotDays:
        """From rows already sorted by unique keys, their records in key then slot order."""
        counts = np.bitwise_count(mask.astype(np.uint16)).astype(np.int64)
        return SlotDays(
            keys=keys.astype(np.int64),
            type_code=type_code.astype(np.int8),
            mask=mask.astype(np.uint16),
            day_count=day_count.astype(np.int64),
            sealed=sealed.astype(np.bool_),
            window_records=window_records.astype(np.uint16),
            first=(np.cumsum(counts) - counts).astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def windows(self) -> int:
        return len(self.window_records)

    @property
    def slot_counts(self) -> IntArray:
        counts: IntArray = np.bitwise_count(self.mask).astype(np.int64)
        return counts

    @property
    def records(self) -> IntArray:
        """Each day's records (the sum of its slots')."""
        if not len(self):
            return np.zeros(0, np.int64)
        totals: IntArray = np.add.reduceat(self.window_records.astype(np.int64), self.first)
        return totals

    def find(self, key: int) -> int:
        """The row of ``key``, or -1."""
        at = int(self.keys.searchsorted(key))
        return at if at < len(self.keys) and int(self.keys[at]) == key else -1

    def member(self, keys: IntArray) -> BoolArray:
        """For each of ``keys``: is it a row here."""
        at = np.minimum(self.keys.searchsorted(keys), max(len(self.keys) - 1, 0))
        found: BoolArray = (self.keys[at] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return found

    def _window_index(self, rows: IntArray) -> IntArray:
        """Indices into ``window_records`` of the given rows' slots, row by row."""
        counts = self.slot_counts[rows]
        total = int(counts.sum())
        offsets = np.repeat(self.first[rows] - (np.cumsum(counts) - counts), counts)
        index: IntArray = offsets + np.arange(total, dtype=np.int64)
        return index

    def subset(self, rows: IntArray) -> SlotDays:
        """The given rows (ascending), as their own ``SlotDays``."""
        return SlotDays.build(
            self.keys[rows],
            self.type_code[rows],
            self.mask[rows],
            self.day_count[rows],
            self.sealed[rows],
            self.window_records[self._window_index(rows)],
        )

    def expand(self, rows: IntArray | None = None) -> Windows:
        """The given rows (all by default) as windows, by key then slot."""
        rows = np.arange(len(self), dtype=np.int64) if rows is None else rows
        bits = (self.mask[rows].astype(np.int64)[:, None] >> _SLOT_BITS) & 1
        owner, slot = np.nonzero(bits)
        keys = self.keys[rows][owner]
        start = key_day(keys) * fmt.DAY_MS + slot * fmt.SLOT_MS
        at = rows[owner]
        return Windows(
            code=key_code(keys),
            type_code=self.type_code[at].astype(np.int64),
            start=start,
            end=start + fmt.SLOT_MS,
            records=self.window_records[self._window_index(rows)].astype(np.int64),
            day_count=self.day_count[at],
            sealed=self.sealed[at],
        )

    def by_code(self) -> dict[int, SlotDays]:
        """These days split per device (uuid code)."""
        codes = key_code(self.keys)
        bounds = np.flatnonzero(np.diff(codes, prepend=-1, append=-1))
        rows = np.arange(len(self), dtype=np.int64)
        return {
            int(codes[lo]): self.subset(rows[lo:hi])
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        }

    @staticmethod
    def concat(parts: list[SlotDays]) -> SlotDays:
        """Parts in the order given (the caller knows their keys ascend across them)."""
        offsets = np.cumsum([0, *(p.windows for p in parts[:-1])])
        columns = [np.concatenate([getattr(p, name) for p in parts]) for name in SlotDays.__slots__]
        columns[-1] = np.concatenate([p.first + o for p, o in zip(parts, offsets, strict=True)])
        return SlotDays(*columns)

    @staticmethod
    def merge(parts: list[SlotDays]) -> SlotDays:
        """Days of several parts whose keys are disjoint, in key order."""
        parts = [part for part in parts if len(part)]
        if not parts:
            return SlotDays.empty()
        if len(parts) == 1:
            return parts[0]
        joined = SlotDays.concat(parts)
        return joined.subset(np.argsort(joined.keys, kind="stable"))


def split_whole_days(windows: Windows) -> tuple[SlotDays, BoolArray]:
    """``windows`` (sorted by code, start, end; one per identity) → the days that are whole
    slots sharing one day count and sealed flag, and which windows are left over."""
    n = len(windows)
    if n == 0:
        return SlotDays.empty(), np.zeros(0, np.bool_)
    keys = windows.keys
    starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
    sizes = np.diff(np.append(starts, n))
    whole = (windows.start % fmt.SLOT_MS == 0) & (windows.end - windows.start == fmt.SLOT_MS)
    whole &= (windows.records >= 0) & (windows.records <= fmt.MAX_SLOT_RECORDS)
    all_whole = np.minimum.reduceat(whole.astype(np.int8), starts) == 1
    one_count = np.minimum.reduceat(windows.day_count, starts) == np.maximum.reduceat(
        windows.day_count, starts
    )
    sealed_sum = np.add.reduceat(windows.sealed.astype(np.int64), starts)
    one_seal = (sealed_sum == 0) | (sealed_sum == sizes)
    regular_group = all_whole & one_count & one_seal
    regular = np.repeat(regular_group, sizes)
    slot = (windows.start - (windows.start // fmt.DAY_MS) * fmt.DAY_MS) // fmt.SLOT_MS
    bit = np.where(regular, np.left_shift(1, np.where(regular, slot, 0)), 0)
    masks = np.bitwise_or.reduceat(bit, starts)
    chosen = starts[regular_group]
    days = SlotDays.build(
        keys[chosen],
        windows.type_code[chosen],
        masks[regular_group],
        windows.day_count[chosen],
        windows.sealed[chosen],
        windows.records[regular],
    )
    return days, ~regular
