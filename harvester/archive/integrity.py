"""Data files the checkpoint vouches for, checked before the planner trusts them.

The planner reuses every window the checkpoint holds, so a file cut short by a crash (a store
whose rename outlived the data, a disk error, a hand-edited archive) would be trusted forever.
Every in-range day with finished windows that hold records gets the frame of its Parquet file
checked through ``storage.open_input`` (magic bytes at both ends and a footer length that
fits: 12 bytes read, never the data). A day whose file is missing or unreadable is planned as
if the checkpoint knew nothing of it, so the whole day is fetched again and the sink replaces
the file.

A run looks first only at the files it may write into (``FileSet`` "written": those holding a
day the plan may fetch, ``planner.days_maybe_fetched``), since the sink merges new records into
what such a file holds. The others, most of a large archive (700,000 day files on a half-done
5-year fleet), it looks at while it fetches, and then fetches the damaged ones' days: its first
request does not wait for the archive's size.

A month file (``--partition month``) holds many days, so it is checked once for all of them,
and its footer's row count too: it must hold at least the rows the checkpoint vouches for in
the month, counting one window per two-hour slot (clipped pieces of a slot overlap the whole
slot). When it does not, every in-range day of the month is fetched again and merged in. The
count catches what the frame cannot: days outside ``--since``/``--until`` that a repaired month
file lost (the run that rewrote it did not fetch them) are fetched by the next run that covers
them. A month file is read from its start, whole when it is smaller than one read (64 KiB),
and its footer parsed from those bytes: ~125 µs a file, most of it parsing the footer (a day
file's frame alone: ~22 µs).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import BinaryIO, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester.archive.layout import DAY, Period, partition_file_key, period_firsts, period_of
from harvester.archive.settings import archive_partition
from harvester.archive.storage import Storage
from harvester.errors import Interrupted, StorageError
from harvester.models import DayAvailability, Device, DeviceDays, FinishedWindow, WholeSlotDays
from harvester.plan.planner import among, ascending_unique, days_maybe_fetched
from harvester.plan.windows import day_overlaps

log = structlog.get_logger(__name__)

MAGIC: Final = b"PAR1"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL: Final = _EPOCH.date().toordinal()
_DAY_MS: Final = 86_400_000
_SLOT_S: Final = 2 * 3600
#: Bytes of a month file read at once: the whole of most (a 5-year hourly fleet's are ~30 KB),
#: the end and footer of the others, as Arrow's own footer read does.
_FOOTER_READ: Final = 64 * 1024

FinishedLookup = Callable[[str, dt.date], Sequence[FinishedWindow]]
#: A device's day ordinals with finished windows (``CheckpointJournal.finished_days``).
FinishedDays = Callable[[str], Collection[int]]
WholeDays = Callable[[str], WholeSlotDays]
DayKey = tuple[str, dt.date]


def file_problem(storage: Storage, key: str) -> str | None:
    """What is wrong with the Parquet file at ``key`` (None when it looks whole).

    Reads 12 bytes: the leading and trailing ``PAR1`` magic and the footer length, which a
    truncated file cannot all have right. ``pyarrow.parquet.ParquetFile`` would also parse the
    footer, at ten times the cost (~200 µs a file: 40 s per start on 200,000 device-days).
    """
    return read_file_facts(storage, key, DAY)[0]


def _frame(handle: BinaryIO, footer_too: bool) -> tuple[str | None, bytes]:
    """What is wrong with the file's frame (None: whole) and, when whole and ``footer_too``,
    its footer and the 8 bytes after it.

    A day file's 12 bytes are read at its ends. A month file is read from its start, up to
    ``_FOOTER_READ`` bytes: most are that small, and come whole in one read, footer included
    (every read is a system call, or a request on object storage); a longer one's end is
    read next, and its footer's start, if the footer is longer still.
    """
    head = handle.read(_FOOTER_READ if footer_too else 4)
    if footer_too and len(head) < _FOOTER_READ:
        size, tail = len(head), head  # the whole file
    else:
        size = handle.seek(0, os.SEEK_END)
        wanted = min(size, _FOOTER_READ if footer_too else 8)
        handle.seek(size - wanted)
        tail = handle.read(wanted)
        if len(tail) != wanted:
            tail = b""
    if size < 12:
        return f"{size} bytes, too short for Parquet", b""
    footer = int.from_bytes(tail[-8:-4], "little")
    whole = len(tail) >= 8 and head[:4] == MAGIC and tail[-4:] == MAGIC and footer + 12 <= size
    if not whole:
        return f"not a whole Parquet file ({size} bytes, footer {footer}): cut short?", b""
    if not footer_too:
        return None, b""
    if footer + 8 > len(tail):
        handle.seek(size - 8 - footer)
        tail = handle.read(footer + 8)
        if len(tail) != footer + 8:
            return f"not a whole Parquet file ({size} bytes, footer {footer}): cut short?", b""
    return None, tail[-(footer + 8) :]


#: Which vouched files ``damaged_days`` looks at: every one; only those a plan may write into
#: (holding a day it may fetch: a run looks at them before it plans, as a damaged one changes
#: what the plan fetches of its days); or only the others (a run never writes them, so it
#: looks at them while it fetches, and fetches the damaged ones' days at its end).
FileSet = Literal["all", "written", "unwritten"]


def damaged_days(
    storage: Storage,
    availability: Mapping[Device, Sequence[DayAvailability]],
    finished_for: FinishedLookup,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    finished_days: FinishedDays | None = None,
    whole_days: WholeDays | None = None,
    files: FileSet = "all",
    stop: Callable[[], bool] = lambda: False,
) -> set[DayKey]:
    """The in-range device-days whose checkpointed records have no readable file, or (month
    files) a file that holds fewer rows than the checkpoint vouches for (warned).

    With ``finished_days`` (the journal's days with finished windows) only the periods holding
    such a day are looked at: a fleet's million available days cost nothing when the
    checkpoint holds few of them. With ``whole_days`` the rows vouched for on a whole-slot day
    are read from its arrays, without making its windows. ``files`` chooses among the vouched
    files (``FileSet``); ``stop()``, asked device by device, ends the look with ``Interrupted``.
    """
    started = time.perf_counter()
    partition = archive_partition(storage)
    action = (
        "the whole day is fetched again"
        if partition == DAY
        else "every day of the month in range is fetched again"
    )
    damaged: set[DayKey] = set()
    checked = 0
    for device, days in availability.items():
        if stop():
            raise Interrupted("stopped while looking at the files the checkpoint vouches for")
        if isinstance(days, DeviceDays) and finished_days is not None and whole_days is not None:
            vouched_periods = _vouched_periods_from_arrays(
                device, days, partition, lo, hi, finished_for, finished_days, whole_days
            )
        else:
            vouched_periods = _vouched_periods(
                device, days, partition, lo, hi, finished_for, finished_days
            )
        if files != "all" and vouched_periods:
            written = ascending_unique(
                period_firsts(days_maybe_fetched(days, whole_days, device, lo, hi), partition)
            )
            firsts = np.array([first for first, _, _ in vouched_periods], np.int64)
            chosen = among(firsts, written) == (files == "written")
            vouched_periods = [p for p, keep in zip(vouched_periods, chosen, strict=True) if keep]
        for first, in_range, vouched in vouched_periods:
            checked += 1
            key = partition_file_key(
                device.type, device.uuid, dt.date.fromordinal(first), partition
            )
            problem, rows = read_file_facts(storage, key, partition)
            if problem is None and rows is not None and rows < vouched:
                problem = f"holds {rows} rows, fewer than the {vouched} the checkpoint vouches for"
            if problem is not None:
                damaged.update((device.uuid, dt.date.fromordinal(o)) for o in in_range.tolist())
                log.warning("day_file_damaged", key=key, problem=problem, action=action)
    log.debug(
        "day_files_checked",
        files=checked,
        which=files,
        seconds=round(time.perf_counter() - started, 3),
    )
    return damaged


#: A file to check: its period's first day and its in-range days (``date.toordinal``, days
#: made only when the file is damaged), the rows the checkpoint vouches for in it.
_ToCheck = tuple[int, npt.NDArray[np.int64], int]


def _vouched_periods(
    device: Device,
    days: Sequence[DayAvailability],
    partition: str,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    finished_for: FinishedLookup,
    finished_days: FinishedDays | None,
) -> list[_ToCheck]:
    """The files to check of one device, deciding day by day."""
    found: list[_ToCheck] = []
    periods = _periods(days, partition, finished_days and finished_days(device.uuid))
    for period, members in periods.items():
        in_range = [day for day in members if day_overlaps(day, lo, hi)]
        if not in_range:
            continue
        vouched = sum(_vouched_rows(finished_for(device.uuid, day)) for day in members)
        if vouched:
            ordinals = np.array([day.toordinal() for day in in_range], np.int64)
            found.append((period.first.toordinal(), ordinals, vouched))
    return found


def _vouched_periods_from_arrays(
    device: Device,
    days: DeviceDays,
    partition: str,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    finished_for: FinishedLookup,
    finished_days: FinishedDays,
    whole_days: WholeDays,
) -> list[_ToCheck]:
    """``_vouched_periods`` from the availability's and the checkpoint's arrays: only days
    that are not whole-slot days have their windows made (a fleet's 700,000 finished days
    cost ~20 s of Python one by one); the files come by period, grouped from sorted arrays."""
    finished = ascending_unique(np.fromiter(finished_days(device.uuid), np.int64))
    if not len(finished):
        return []
    ordinals = days.days.astype(np.int64)
    firsts = period_firsts(ordinals, partition)
    members = among(firsts, ascending_unique(period_firsts(finished, partition)))
    day_start = (ordinals - _EPOCH_ORDINAL) * _DAY_MS
    in_range = members.copy()
    if lo is not None:
        in_range &= day_start + _DAY_MS > _ms(lo)
    if hi is not None:
        in_range &= day_start < _ms(hi)
    whole = whole_days(device.uuid)
    at = np.minimum(np.searchsorted(whole.days, ordinals), max(len(whole.days) - 1, 0))
    held = (whole.days[at] == ordinals) if len(whole.days) else np.zeros(len(ordinals), bool)
    vouched = np.where(held, whole.records[at] if len(whole.days) else 0, 0)
    for index in np.flatnonzero(members & ~held & among(ordinals, finished)).tolist():
        day = dt.date.fromordinal(int(ordinals[index]))
        vouched[index] = _vouched_rows(finished_for(device.uuid, day))
    # The members by period (stable: by day within one), each period a run of them.
    chosen = np.flatnonzero(members)
    chosen = chosen[np.argsort(firsts[chosen], kind="stable")]
    if not len(chosen):
        return []
    runs = np.flatnonzero(np.diff(firsts[chosen], prepend=firsts[chosen[0]] - 1))
    totals = np.add.reduceat(vouched[chosen], runs)
    ranged = in_range[chosen]
    bounds = np.cumsum(np.add.reduceat(ranged.astype(np.int64), runs)).tolist()
    ranged_days = ordinals[chosen[ranged]]
    return [
        (first, ranged_days[begin:end], total)
        for first, total, begin, end in zip(
            firsts[chosen[runs]].tolist(), totals.tolist(), [0, *bounds[:-1]], bounds, strict=True
        )
        if total and end > begin
    ]


def _ms(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


def _periods(
    days: Sequence[DayAvailability], partition: str, finished: Collection[int] | None
) -> dict[Period, list[dt.date]]:
    """The available days per data file: every file's, or (``finished`` given: day ordinals)
    only the files holding a finished day."""
    periods: defaultdict[Period, list[dt.date]] = defaultdict(list)
    if finished is None:
        for info in days:
            periods[period_of(info.day, partition)].append(info.day)
        return periods
    ordinals = (
        days.days if isinstance(days, DeviceDays) else np.array([d.day.toordinal() for d in days])
    )
    order = np.argsort(ordinals, kind="stable")
    ordered = ordinals[order]
    for period in {period_of(dt.date.fromordinal(day), partition) for day in finished}:
        lo, hi = np.searchsorted(
            ordered, [period.first.toordinal(), period.last.toordinal() + 1]
        ).tolist()
        periods[period] = [days[int(index)].day for index in order[lo:hi]]
    return periods


def _vouched_rows(finished: Sequence[FinishedWindow]) -> int:
    """Rows the checkpoint vouches for on one day: per two-hour slot, its largest window (a
    range edge clips a slot into pieces that overlap the whole slot's window)."""
    per_slot: dict[int, int] = {}
    for window in finished:
        slot = int(window.start.timestamp()) // _SLOT_S
        per_slot[slot] = max(per_slot.get(slot, 0), window.records)
    return sum(per_slot.values())


#: What a data file says of itself: what is wrong with its frame (None: whole), and its
#: footer's row count (month files; None for day files, or when the frame is wrong).
FileFacts = tuple[str | None, int | None]


def read_file_facts(storage: Storage, key: str, partition: str) -> FileFacts:
    """``file_problem`` of the file and, for a month file, its footer's row count (one open;
    the footer is read with the frame and parsed from its bytes)."""
    try:
        handle = storage.open_input(key)
    except StorageError as exc:
        return ("missing" if not storage.exists(key) else str(exc)), None
    with handle:
        try:
            problem, footer = _frame(handle, footer_too=partition != DAY)
        except OSError as exc:
            return f"unreadable ({exc})", None
    if problem is not None or partition == DAY:
        return problem, None
    try:
        return None, int(pq.ParquetFile(pa.BufferReader(MAGIC + footer)).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        # ValueError: a garbled column name is not UTF-8 (UnicodeDecodeError).
        return f"unreadable footer ({exc})", None


def whole_days_only_intact(whole_days: WholeDays, damaged: set[DayKey]) -> WholeDays:
    """``whole_days`` without the ``damaged`` days."""
    if not damaged:
        return whole_days

    def lookup(uuid: str) -> WholeSlotDays:
        return whole_days(uuid).without(
            [day.toordinal() for owner, day in damaged if owner == uuid]
        )

    return lookup


def trusting_only_intact(finished_for: FinishedLookup, damaged: set[DayKey]) -> FinishedLookup:
    """``finished_for`` that knows nothing of the ``damaged`` days."""
    if not damaged:
        return finished_for

    def lookup(uuid: str, day: dt.date) -> Sequence[FinishedWindow]:
        return () if (uuid, day) in damaged else finished_for(uuid, day)

    return lookup
