"""The join of ``report``'s sources: one cell per device-day that any of them knows of.

The checkpoint's ``DayTotals``, the stored rows and the server's counts each come as columns
keyed by a uuid code and a day. Each is mapped to the drawn devices, restricted to the day
range, and placed by ``searchsorted`` into the sorted union of their (device, day) keys;
states are then decided for all cells at once (``report.classify_days``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from harvester.archive.availability import AvailabilityColumns
from harvester.archive.checkpoint.state import DayTotals
from harvester.inspect.report import Coverage, DayCells, StoredRows, classify_days
from harvester.models import DEVICE_TYPES, Device

_Rows = npt.NDArray[np.bool_] | slice
#: Devices joined at a time by ``coverage_parts``: ~90,000 device-days for 5 years each.
DEVICES_PER_PART: Final = 64


@dataclass(frozen=True, slots=True)
class _Source:
    """One source's device-days within the drawn devices and range: device index and day."""

    device: npt.NDArray[np.int32]
    day: npt.NDArray[np.int32]
    kept: _Rows
    """Which of the source's rows these are (a slice of all of them when no row is left out,
    so that their columns are used as they are, not copied)."""


def _restrict(
    device: npt.NDArray[np.int32],
    day: npt.NDArray[np.int32],
    since: dt.date | None,
    until: dt.date | None,
) -> _Source:
    """Rows of a drawn device (``device`` >= 0) whose day is within ``since .. until``."""
    kept = device >= 0
    if since is not None:
        kept &= day >= since.toordinal()
    if until is not None:
        kept &= day <= until.toordinal()
    if kept.all():
        return _Source(device, day, slice(None))
    return _Source(device[kept], day[kept], kept)


def drawn_devices(
    devices: Iterable[Device], checkpoint: DayTotals, folders: Iterable[tuple[str, str]]
) -> list[Device]:
    """Every device the picture draws, in its order: those listed (the first of a uuid wins),
    then those known only to the checkpoint (with the type of their earliest day there), then
    those known only by a folder (type, uuid) of files."""
    by_uuid: dict[str, Device] = {}
    for device in devices:
        by_uuid.setdefault(device.uuid, device)
    _, first_rows = np.unique(checkpoint.code, return_index=True)
    for code, kind in zip(
        checkpoint.code[first_rows].tolist(), checkpoint.type_code[first_rows].tolist(), strict=True
    ):
        uuid = checkpoint.uuids[code]
        by_uuid.setdefault(uuid, Device(uuid, DEVICE_TYPES[kind], ""))
    for device_type, uuid in folders:
        if device_type in DEVICE_TYPES:
            by_uuid.setdefault(uuid, Device(uuid, device_type, ""))
    return sorted(by_uuid.values(), key=lambda d: (d.type, d.name or d.uuid, d.uuid))


def build_coverage(
    devices: Iterable[Device],
    checkpoint: DayTotals,
    stored: StoredRows,
    server_days: AvailabilityColumns,
    *,
    counts_are_current: bool = False,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> Coverage:
    """Joins the sources into one cell per device-day that any of them knows of.

    ``server_days`` holds the server's counts (recorded by the last run, or fetched now when
    ``counts_are_current``). Recorded counts are topped up with the checkpoint's own (a day
    planned against a larger count than was recorded); current counts are taken as they are.
    A file stored under another type than its device's is not its device's.
    """
    drawn = drawn_devices(devices, checkpoint, stored.devices)
    by_uuid = {device.uuid: device for device in drawn}
    index = {device.uuid: i for i, device in enumerate(drawn)}

    def rows_of(owners: Sequence[int], codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        return np.asarray(owners, np.int32).take(codes)

    folders = [
        index[uuid] if (known := by_uuid.get(uuid)) is not None and known.type == kind else -1
        for kind, uuid in stored.devices
    ]
    ours = rows_of([index.get(uuid, -1) for uuid in checkpoint.uuids], checkpoint.code)
    theirs = rows_of([index.get(uuid, -1) for uuid in server_days.uuids], server_days.code)
    sources = (
        _restrict(ours, checkpoint.day, since, until),
        _restrict(rows_of(folders, stored.code), stored.day, since, until),
        _restrict(theirs, server_days.day, since, until),
    )
    del ours, theirs
    cells = _join(len(drawn), sources, stored, server_days, checkpoint, counts_are_current)
    first = dt.date.fromordinal(int(np.min(cells.day))) if len(cells) else None
    last = dt.date.fromordinal(int(np.max(cells.day))) if len(cells) else None
    return Coverage(drawn, cells, first, last, _counts_from(counts_are_current))


def _counts_from(counts_are_current: bool) -> str:
    return "the server, now" if counts_are_current else "the checkpoint and the last run"


def coverage_parts(
    devices: Iterable[Device],
    checkpoint: DayTotals,
    folders: Sequence[tuple[str, str]],
    server_days: AvailabilityColumns,
    read_stored: Callable[[Sequence[tuple[str, str]]], StoredRows],
    *,
    counts_are_current: bool = False,
    since: dt.date | None = None,
    until: dt.date | None = None,
    devices_per_part: int = DEVICES_PER_PART,
) -> Iterator[Coverage]:
    """``build_coverage`` a part of the drawn devices at a time, in drawing order, for
    ``joined`` to put together: only one part's stored rows (``read_stored`` of its device
    folders, ``(type, uuid)``) and join are in memory at once. A folder under another type
    than its device's is not read.
    """
    drawn = drawn_devices(devices, checkpoint, folders)
    part_of = {device.uuid: index // devices_per_part for index, device in enumerate(drawn)}
    type_of = {device.uuid: device.type for device in drawn}
    folders_of: dict[int, list[tuple[str, str]]] = {}
    for kind, uuid in folders:
        if type_of.get(uuid) == kind:
            folders_of.setdefault(part_of[uuid], []).append((kind, uuid))

    ours, theirs = _RowsOfDevices(checkpoint), _RowsOfDevices(server_days)
    for part, start in enumerate(range(0, len(drawn), devices_per_part)):
        uuids = [device.uuid for device in drawn[start : start + devices_per_part]]
        yield build_coverage(
            drawn[start : start + devices_per_part],
            _take(checkpoint, ours.rows(uuids)),
            read_stored(folders_of.get(part, [])),
            _take(server_days, theirs.rows(uuids)),
            counts_are_current=counts_are_current,
            since=since,
            until=until,
        )


_Columns = TypeVar("_Columns", DayTotals, AvailabilityColumns)


class _RowsOfDevices:
    """Which rows of a source's columns are whose: both sources are sorted by ``code``, so
    each device's rows are one run of them, found by where each code begins (a row number
    per device-day, held for the whole join, cost 11 MB on 1,000 devices x 5 years)."""

    def __init__(self, columns: DayTotals | AvailabilityColumns) -> None:
        self._code_of = {uuid: code for code, uuid in enumerate(columns.uuids)}
        self._bounds = np.searchsorted(columns.code, np.arange(len(columns.uuids) + 1))

    def rows(self, uuids: Iterable[str]) -> npt.NDArray[np.intp]:
        """The rows of these devices', by code (none for a uuid the source does not list)."""
        codes = sorted(code for uuid in uuids if (code := self._code_of.get(uuid)) is not None)
        bounds = self._bounds
        return np.concatenate(
            [np.zeros(0, np.intp)] + [np.arange(bounds[c], bounds[c + 1]) for c in codes]
        )


def _take(columns: _Columns, rows: npt.NDArray[np.intp]) -> _Columns:
    """The ``rows`` of a source's columns (its uuid list, which ``code`` indexes, kept)."""
    arrays = (f.name for f in fields(columns) if isinstance(getattr(columns, f.name), np.ndarray))
    return replace(columns, **{name: getattr(columns, name)[rows] for name in arrays})


def joined(parts: Sequence[Coverage], *, counts_are_current: bool = False) -> Coverage:
    """The parts ``coverage_parts`` made, as one coverage: their devices one after the
    other, their cells (each part's sorted by device and day) renumbered and concatenated."""
    devices = [device for part in parts for device in part.devices]
    offsets = np.cumsum([0, *(len(part.devices) for part in parts)])[:-1].tolist()
    cells = DayCells(
        np.concatenate(
            [np.zeros(0, np.int32)]
            + [part.cells.device + offset for part, offset in zip(parts, offsets, strict=True)]
        ).astype(np.int32, copy=False),
        *(
            np.concatenate([np.zeros(0, dtype)] + [getattr(part.cells, name) for part in parts])
            for name, dtype in (
                ("day", np.int32),
                ("stored", np.int64),
                ("expected", np.int64),
                ("state", np.int8),
            )
        ),
    )
    firsts = [part.first for part in parts if part.first is not None]
    lasts = [part.last for part in parts if part.last is not None]
    return Coverage(
        devices,
        cells,
        min(firsts, default=None),
        max(lasts, default=None),
        _counts_from(counts_are_current),
    )


def _join(
    n_devices: int,
    sources: tuple[_Source, _Source, _Source],
    stored: StoredRows,
    server_days: AvailabilityColumns,
    checkpoint: DayTotals,
    counts_are_current: bool,
) -> DayCells:
    """One cell per (device, day) of any source, sorted: each source's rows are placed by
    ``searchsorted`` into the sorted union of their (device, day) keys."""
    low = min((int(np.min(s.day)) for s in sources if len(s.day)), default=0)
    high = max((int(np.max(s.day)) for s in sources if len(s.day)), default=0)
    span = high - low + 1
    # Half the memory of int64 keys whenever they fit (1,000 devices x 5 years: 1.8 M). The
    # device columns are the join's own (made by ``take`` or a mask): keys are made in place.
    dtype = np.dtype(np.int32 if n_devices * span < 2**31 else np.int64)
    ours, files, server = (s.device.astype(dtype, copy=False) for s in sources)
    for key, source in zip((ours, files, server), sources, strict=True):
        key *= span
        key += source.day
        key -= low
    union = np.concatenate([ours, files, server])
    union.sort()
    distinct = np.empty(len(union), np.bool_)
    distinct[:1] = True
    np.not_equal(union[1:], union[:-1], out=distinct[1:])
    union = union[distinct]
    del distinct
    n = len(union)
    rows_stored = np.zeros(n, np.int64)
    rows_stored[union.searchsorted(files)] = stored.rows[sources[1].kept]
    expected = np.zeros(n, np.int64)
    expected[union.searchsorted(server)] = server_days.count[sources[2].kept]
    del files, server
    at = union.searchsorted(ours)
    kept = sources[0].kept
    finished = np.zeros(n, np.int32)
    finished[at] = checkpoint.windows_finished[kept]
    failed = np.zeros(n, np.int32)
    failed[at] = checkpoint.windows_failed[kept]
    if not counts_are_current:
        expected[at] = np.maximum(expected[at], checkpoint.day_count[kept])
    state = classify_days(rows_stored, expected, finished, failed)
    device, day = np.divmod(union, span)
    day += low
    return DayCells(
        device.astype(np.int32, copy=False),
        day.astype(np.int32, copy=False),
        rows_stored,
        expected,
        state,
    )
