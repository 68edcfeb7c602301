"""The checkpoint's device-days as totals: what ``status`` and ``report`` read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harvester.models import DEVICE_TYPES, DeviceType

IntArray = npt.NDArray[np.int64]
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class DayProgress:
    """What the checkpoint knows about one device's UTC day.

    ``day_count`` is the largest server count its finished windows were planned against (a
    day's count only grows, so that is the newest); 0 when none finished.
    """

    device_uuid: str
    device_type: DeviceType
    day: dt.date
    windows_finished: int
    records: int
    day_count: int
    windows_failed: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    """``DayProgress`` as columns: one row per device-day the checkpoint knows of, sorted by
    (uuid, day). What ``status`` and ``report`` read: a fleet of millions of device-days costs
    tens of bytes a day, where one ``DayProgress`` object each would cost hundreds.
    """

    uuids: list[str]
    """Sorted; ``code`` indexes it."""
    code: npt.NDArray[np.int32]
    type_code: npt.NDArray[np.int8]
    """Index into ``models.DEVICE_TYPES``."""
    day: npt.NDArray[np.int32]
    """``date.toordinal()`` of the UTC day."""
    windows_finished: npt.NDArray[np.int32]
    records: npt.NDArray[np.int64]
    day_count: npt.NDArray[np.int64]
    """The largest server count the day's finished windows were planned against; 0 if none."""
    windows_failed: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.day)

    def progress(self) -> list[DayProgress]:
        """These rows as ``DayProgress`` objects (for small archives and tests)."""
        rows = zip(
            self.code.tolist(),
            self.type_code.tolist(),
            self.day.tolist(),
            self.windows_finished.tolist(),
            self.records.tolist(),
            self.day_count.tolist(),
            self.windows_failed.tolist(),
            strict=True,
        )
        return [
            DayProgress(
                self.uuids[code], DEVICE_TYPES[kind], dt.date.fromordinal(day), n, total, c, f
            )
            for code, kind, day, n, total, c, f in rows
        ]


@dataclass(frozen=True, slots=True)
class DayRows:
    """Per-day partial totals, one row per (code, epoch day) or more (they are summed)."""

    code: IntArray
    type_code: IntArray
    epoch_day: IntArray
    windows_finished: IntArray
    records: IntArray
    day_count: IntArray
    windows_failed: IntArray


_COLUMNS = (
    ("type_code", np.int8),
    ("day", np.int32),
    ("windows_finished", np.int32),
    ("records", np.int64),
    ("day_count", np.int64),
    ("windows_failed", np.int32),
)


def totals_per_device(
    sizes: Mapping[str, int], rows_of: Callable[[str], Sequence[DayRows]]
) -> DayTotals:
    """Per device (uuid), partial totals summed per day into one ``DayTotals``; the device
    type of a day is that of its first row (the earlier piece wins).

    ``sizes`` bounds each device's rows; ``rows_of(uuid)`` makes its partial totals when its
    turn comes. The output is allocated once and filled device by device, so a fleet's
    million days cost their final columns plus one device's worth at a time (``code`` of
    the partial rows is ignored).
    """
    uuids = sorted(uuid for uuid, size in sizes.items() if size)
    size = sum(sizes[uuid] for uuid in uuids)
    out = {name: np.zeros(size, dtype) for name, dtype in _COLUMNS}
    code = np.zeros(size, np.int32)
    filled = 0
    for index, uuid in enumerate(uuids):
        rows = _one_device(rows_of(uuid))
        n = len(rows.epoch_day)
        code[filled : filled + n] = index
        out["day"][filled : filled + n] = rows.epoch_day + _EPOCH_ORDINAL
        for name, _ in _COLUMNS:
            if name != "day":
                out[name][filled : filled + n] = getattr(rows, name)
        filled += n
    return DayTotals(
        uuids,
        code[:filled],
        type_code=out["type_code"][:filled].astype(np.int8, copy=False),
        day=out["day"][:filled].astype(np.int32, copy=False),
        windows_finished=out["windows_finished"][:filled].astype(np.int32, copy=False),
        records=out["records"][:filled].astype(np.int64, copy=False),
        day_count=out["day_count"][:filled].astype(np.int64, copy=False),
        windows_failed=out["windows_failed"][:filled].astype(np.int32, copy=False),
    )


def _one_device(parts: Sequence[DayRows]) -> DayRows:
    """One device's partial totals summed per day, by day."""
    parts = [part for part in parts if len(part.epoch_day)]
    if len(parts) == 1 and bool((np.diff(parts[0].epoch_day) > 0).all()):
        return parts[0]
    joined = {n: np.concatenate([getattr(p, n) for p in parts]) for n in DayRows.__slots__}
    order = np.argsort(joined["epoch_day"], kind="stable")
    day = joined["epoch_day"][order]
    starts = np.flatnonzero(np.diff(day, prepend=day[0] - 1))

    def total(name: str) -> IntArray:
        summed: IntArray = np.add.reduceat(joined[name][order], starts)
        return summed

    return DayRows(
        code=joined["code"][order][starts],
        type_code=joined["type_code"][order][starts],
        epoch_day=day[starts],
        windows_finished=total("windows_finished"),
        records=total("records"),
        day_count=np.maximum.reduceat(joined["day_count"][order], starts),
        windows_failed=total("windows_failed"),
    )
