"""Plain value types shared by the planner, the pool, the sink and the checkpoint.

All datetimes are timezone-aware UTC. Intervals are half-open: ``[start, end)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

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


def is_complete_day(stored: int, server_count: int, windows_failed: int) -> bool:
    """The one definition of a complete device-day, used by ``status`` and ``report``: the
    archive holds as many records as the server counts, the server counts some, and no window
    of the day is failed (a failed window may hide records the count does not show yet)."""
    return windows_failed == 0 and server_count > 0 and stored == server_count


@dataclass(frozen=True, slots=True)
class FailedDevice:
    """A listed device whose available dates could not be read: not harvested this run."""

    device: Device
    reason: str
