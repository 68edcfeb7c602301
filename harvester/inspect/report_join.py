"""The join of ``report``'s sources: one cell per device-day that any of them knows of.

The checkpoint's ``DayTotals``, the stored rows and the server's counts each come as columns
keyed by a uuid code and a day. Each is mapped to the drawn devices, restricted to the day
range, and placed by ``searchsorted`` into the sorted union of their (device, day) keys;
states are then decided for all cells at once (``report.classify_days``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harvester.archive.availability import AvailabilityColumns
from harvester.archive.checkpoint.state import DayTotals
from harvester.inspect.report import Coverage, DayCells, StoredRows, classify_days
from harvester.models import DEVICE_TYPES, Device

_Rows = npt.NDArray[np.bool_] | slice


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
    by_uuid: dict[str, Device] = {}
    for device in devices:
        by_uuid.setdefault(device.uuid, device)
    # A device known only to the checkpoint takes the type of its earliest day there.
    _, first_rows = np.unique(checkpoint.code, return_index=True)
    for code, kind in zip(
        checkpoint.code[first_rows].tolist(), checkpoint.type_code[first_rows].tolist(), strict=True
    ):
        uuid = checkpoint.uuids[code]
        by_uuid.setdefault(uuid, Device(uuid, DEVICE_TYPES[kind], ""))
    for device_type, uuid in stored.devices:
        if device_type in DEVICE_TYPES:
            by_uuid.setdefault(uuid, Device(uuid, device_type, ""))
    drawn = sorted(by_uuid.values(), key=lambda d: (d.type, d.name or d.uuid, d.uuid))
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
    first = dt.date.fromordinal(int(cells.day.min())) if len(cells) else None
    last = dt.date.fromordinal(int(cells.day.max())) if len(cells) else None
    source = "the server, now" if counts_are_current else "the checkpoint and the last run"
    return Coverage(drawn, cells, first, last, source)


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
    low = min((int(s.day.min()) for s in sources if len(s.day)), default=0)
    high = max((int(s.day.max()) for s in sources if len(s.day)), default=0)
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
