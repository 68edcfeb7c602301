"""Plain value types shared by the planner, the pool, the sink and the checkpoint.

All datetimes are timezone-aware UTC. Intervals are half-open: ``[start, end)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

DeviceType = Literal["FMD", "SPOD", "RAMP"]
DEVICE_TYPES: Final[tuple[DeviceType, ...]] = ("FMD", "SPOD", "RAMP")

#: Width of one slot of the UTC window grid; the API serves at most two hours per call.
WINDOW: Final = dt.timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Device:
    """One sensor as listed by ``getDevicesFromDeviceTypeAndRole``."""

    uuid: str
    type: DeviceType
    name: str


@dataclass(frozen=True, slots=True)
class DayAvailability:
    """One entry of ``get{TYPE}DataAvailableDates`` asked with ``Timezone: UTC``.

    ``day`` is the UTC calendar day, ``count`` the server's record count for it and
    ``last_record`` the time of its newest record.
    """

    day: dt.date
    count: int
    last_record: dt.datetime


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)


class DeviceDays(Sequence[DayAvailability]):
    """One device's available days, sorted by day, held as three arrays (20 bytes a day).

    A fleet of 1,000 devices over 5 years has 1.4 million available days: as
    ``DayAvailability`` objects they took ~240 MB, which alone broke the plan's memory bound.
    Items are made on access; the planner reads the arrays directly.
    """

    __slots__ = ("counts", "days", "last_ms")

    def __init__(
        self,
        days: npt.NDArray[np.int32],
        counts: npt.NDArray[np.int64],
        last_ms: npt.NDArray[np.int64],
    ) -> None:
        #: Proleptic Gregorian ordinals (``date.toordinal``), ascending.
        self.days = days
        self.counts = counts
        #: The newest record of each day, in milliseconds since the epoch (UTC).
        self.last_ms = last_ms

    @classmethod
    def of(cls, entries: Iterable[DayAvailability]) -> DeviceDays:
        ordered = sorted(entries, key=lambda entry: entry.day)
        return cls(
            np.array([e.day.toordinal() for e in ordered], np.int32),
            np.array([e.count for e in ordered], np.int64),
            np.array([(e.last_record - _EPOCH) // _MS for e in ordered], np.int64),
        )

    def __len__(self) -> int:
        return len(self.days)

    @overload
    def __getitem__(self, index: int) -> DayAvailability: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[DayAvailability]: ...
    def __getitem__(self, index: int | slice) -> DayAvailability | Sequence[DayAvailability]:
        if isinstance(index, slice):
            return DeviceDays(self.days[index], self.counts[index], self.last_ms[index])
        return DayAvailability(
            dt.date.fromordinal(int(self.days[index])),
            int(self.counts[index]),
            _EPOCH + int(self.last_ms[index]) * _MS,
        )

    def __iter__(self) -> Iterator[DayAvailability]:
        for index in range(len(self.days)):
            yield self[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceDays):
            return NotImplemented
        return (
            np.array_equal(self.days, other.days)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.last_ms, other.last_ms)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: equal by value, unhashable

    def __repr__(self) -> str:
        return f"DeviceDays({len(self)} days)"


@dataclass(frozen=True, slots=True)
class WindowJob:
    """One records request: ``[start, end)`` inside one slot of the UTC 2-hour grid.

    ``start``/``end`` are the slot's bounds unless a range edge clipped them. ``day_count`` is
    the server's count for the UTC day when it was planned. ``reported_until`` is how far the
    device is known to have reported: the day's last record, or the day's end when it has
    data on a later day. ``sealed`` says the device had already sent data after ``end``, so
    the window is not expected to grow.
    """

    device: Device
    day: dt.date
    start: dt.datetime
    end: dt.datetime
    day_count: int
    reported_until: dt.datetime

    @property
    def sealed(self) -> bool:
        return self.end <= self.reported_until


@dataclass(frozen=True, slots=True)
class FinishedWindow:
    """Checkpoint entry: the rows of ``[start, end)`` are durable in the day's file.

    ``records`` is the number of distinct rows that fell in the window; ``day_count`` the
    server's count for the UTC day the window was planned against.
    """

    device_uuid: str
    device_type: DeviceType
    start: dt.datetime
    end: dt.datetime
    records: int
    day_count: int
    sealed: bool

    @property
    def day(self) -> dt.date:
        return self.start.date()


@dataclass(frozen=True, slots=True)
class FailedWindow:
    """Checkpoint entry: every attempt at ``[start, end)`` failed; the next run retries it."""

    device_uuid: str
    device_type: DeviceType
    start: dt.datetime
    end: dt.datetime
    reason: str
    attempts: int

    @property
    def day(self) -> dt.date:
        return self.start.date()


@dataclass(frozen=True, slots=True)
class WholeSlotDays:
    """One device's checkpointed days whose finished windows are whole grid slots sharing one
    day count and sealed flag, as arrays (the checkpoint's compact form, for the planner)."""

    days: npt.NDArray[np.int32]
    """Proleptic Gregorian ordinals, ascending."""
    mask: npt.NDArray[np.uint16]
    """Bit ``i`` set: the window of slot ``i`` (``[2i h, 2i+2 h)`` UTC) is finished."""
    day_count: npt.NDArray[np.int64]
    sealed: npt.NDArray[np.bool_]
    records: npt.NDArray[np.int64]
    """The records of all the day's finished windows."""

    def without(self, days: Collection[int]) -> WholeSlotDays:
        """These days but ``days`` (ordinals)."""
        if not days:
            return self
        keep = ~np.isin(self.days, np.fromiter(days, np.int64))
        return WholeSlotDays(
            self.days[keep],
            self.mask[keep],
            self.day_count[keep],
            self.sealed[keep],
            self.records[keep],
        )


@overload
def is_complete_day(stored: int, server_count: int, windows_failed: int) -> bool: ...
@overload
def is_complete_day(
    stored: npt.NDArray[np.integer],
    server_count: npt.NDArray[np.integer],
    windows_failed: npt.NDArray[np.integer],
) -> npt.NDArray[np.bool_]: ...
def is_complete_day(stored: Any, server_count: Any, windows_failed: Any) -> Any:
    """The one definition of a complete device-day, used by ``status`` and ``report``: the
    archive holds as many records as the server counts, the server counts some, and no window
    of the day is failed (a failed window may hide records the count does not show yet).
    Element-wise on arrays (a fleet's days at once)."""
    return (windows_failed == 0) & (server_count > 0) & (stored == server_count)


_Code = TypeVar("_Code", bound=npt.NDArray[np.integer])
_Day = TypeVar("_Day", bound=npt.NDArray[np.integer])
_Values = TypeVar("_Values", bound=npt.NDArray[np.integer])


def last_of_each_device_day(code: _Code, day: _Day, values: _Values) -> tuple[_Code, _Day, _Values]:
    """Rows keyed by (device code, day) sorted by that key with one row a key, the last given
    of equal keys kept; as given when they already are (the usual case: no copy is made)."""
    step = np.diff(code)
    if bool(np.all((step > 0) | ((step == 0) & (np.diff(day) > 0)))):
        return code, day, values
    key = code.astype(np.int64) << 32 | day.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    last = np.append(key[1:] != key[:-1], True)
    kept = order[last]
    return (
        cast(_Code, code[kept]),
        cast(_Day, day[kept]),
        cast(_Values, values[kept]),
    )


@dataclass(frozen=True, slots=True)
class FailedDevice:
    """A listed device whose available dates could not be read: not harvested this run."""

    device: Device
    reason: str
