"""Day files the checkpoint vouches for, checked before the planner trusts them.

The planner reuses every window the checkpoint holds, so a day file cut short by a crash
(a store whose rename outlived the data, a disk error, a hand-edited archive) would be
trusted forever. Before planning, every in-range day with finished windows that hold records
gets its Parquet footer read (``storage.open_input`` + ``pyarrow.parquet.ParquetFile``: the
magic bytes, the footer and the row-group directory, never the data). A day whose file is
missing or unreadable is planned as if the checkpoint knew nothing of it, so the whole day
is fetched again and the sink replaces the file.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester.errors import StorageError
from harvester.models import DayAvailability, Device, FinishedWindow
from harvester.sink import day_file_key
from harvester.storage import Storage
from harvester.windows import day_overlaps

log = structlog.get_logger(__name__)

FinishedLookup = Callable[[str, dt.date], Sequence[FinishedWindow]]
DayKey = tuple[str, dt.date]


def file_problem(storage: Storage, key: str) -> str | None:
    """What is wrong with the Parquet file at ``key`` (None when its footer reads)."""
    try:
        handle = storage.open_input(key)
    except StorageError as exc:
        return "missing" if not storage.exists(key) else str(exc)
    try:
        with handle:
            pq.ParquetFile(handle).metadata  # noqa: B018 -- reading the footer is the check
    except (pa.ArrowException, OSError) as exc:
        return f"unreadable footer ({exc})"
    return None


def damaged_days(
    storage: Storage,
    availability: Mapping[Device, Sequence[DayAvailability]],
    finished_for: FinishedLookup,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
) -> set[DayKey]:
    """The in-range device-days whose checkpointed records have no readable file (warned)."""
    started = time.perf_counter()
    damaged: set[DayKey] = set()
    checked = 0
    for device, days in availability.items():
        for info in days:
            if not day_overlaps(info.day, lo, hi):
                continue
            finished = finished_for(device.uuid, info.day)
            if not any(window.records for window in finished):
                continue
            checked += 1
            key = day_file_key(device.type, device.uuid, info.day)
            problem = file_problem(storage, key)
            if problem is not None:
                damaged.add((device.uuid, info.day))
                log.warning(
                    "day_file_damaged",
                    key=key,
                    problem=problem,
                    action="the whole day is fetched again",
                )
    log.debug("day_files_checked", files=checked, seconds=round(time.perf_counter() - started, 3))
    return damaged


def trusting_only_intact(finished_for: FinishedLookup, damaged: set[DayKey]) -> FinishedLookup:
    """``finished_for`` that knows nothing of the ``damaged`` days."""
    if not damaged:
        return finished_for

    def lookup(uuid: str, day: dt.date) -> Sequence[FinishedWindow]:
        return () if (uuid, day) in damaged else finished_for(uuid, day)

    return lookup
