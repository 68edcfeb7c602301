"""``harvester verify``: stored rows per device and day against the server's own counts.

Days are reckoned in ``--timezone`` (UTC by default), as the server's available-dates call
reckons them. In UTC a day file's stored count is read from its footer; a month file, or any
file in another zone, has its ``date`` column read and bucketed by day.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvester.archive.layout import DAY, Period, device_prefix, is_temporary, parse_file_key
from harvester.archive.storage import Storage
from harvester.models import DayAvailability, Device

_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class DayMismatch:
    device_uuid: str
    device_type: str
    day: dt.date
    server_count: int
    stored_count: int


@dataclass
class VerifyReport:
    days_checked: int = 0
    server_records: int = 0
    stored_records: int = 0
    mismatches: list[DayMismatch] = field(default_factory=list)


def data_files(storage: Storage, device: Device) -> dict[Period, str]:
    """The device's data files (day or month) by period (temporary leftovers ignored)."""
    files: dict[Period, str] = {}
    for key in storage.list_files(device_prefix(device.type, device.uuid)):
        parsed = None if is_temporary(key) else parse_file_key(key)
        if parsed is not None and parsed[1] == device.uuid:
            files[parsed[2]] = key
    return files


def stored_counts(storage: Storage, device: Device, zone: ZoneInfo) -> Counter[dt.date]:
    """Rows stored for ``device`` per day of ``zone``."""
    counts: Counter[dt.date] = Counter()
    utc = zone.key == "UTC"
    for period, key in data_files(storage, device).items():
        with storage.open_input(key) as handle:
            parquet = pq.ParquetFile(handle)
            if utc and period.partition == DAY:
                counts[period.first] += parquet.metadata.num_rows
                continue
            # One file's few thousand dates: pyarrow's own threads cost more than they save.
            dates = parquet.read(columns=["date"], use_threads=False).column("date")
        counts.update(day_counts(dates, zone))
    return counts


def utc_day_counts(
    dates: pa.ChunkedArray,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The UTC days (``date.toordinal()``, ascending) that non-null ``dates`` (timestamps)
    fall on, and how many fall on each: by integer division of the milliseconds, ~5 times
    cheaper than formatting each date."""
    millis = pc.drop_null(dates.cast(pa.timestamp("ms", tz="UTC"))).cast(pa.int64())
    days, counts = np.unique(np.floor_divide(millis.to_numpy(), _DAY_MS), return_counts=True)
    return (days + _EPOCH_ORDINAL).astype(np.int32), counts.astype(np.int64)


def day_counts(dates: pa.ChunkedArray, zone: ZoneInfo) -> Counter[dt.date]:
    """How many of the non-null ``dates`` (``timestamp[ms, UTC]``) fall on each day of
    ``zone``."""
    if zone.key == "UTC":
        days, counts = utc_day_counts(dates)
        return Counter(
            {
                dt.date.fromordinal(day): count
                for day, count in zip(days.tolist(), counts.tolist(), strict=True)
            }
        )
    local = pc.strftime(
        pc.drop_null(dates.cast(pa.timestamp("ms", tz=zone.key))), format="%Y-%m-%d"
    )
    return Counter(
        {
            dt.date.fromisoformat(value["values"]): value["counts"]
            for value in pc.value_counts(local).to_pylist()
        }
    )


def _in_range(day: dt.date, since: dt.date | None, until: dt.date | None) -> bool:
    return (since is None or day >= since) and (until is None or day <= until)


def compare(
    storage: Storage,
    availability: Mapping[Device, Sequence[DayAvailability]],
    zone: ZoneInfo,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> VerifyReport:
    """Every device-day in range where the stored count differs from the server's."""
    report = VerifyReport()
    for device, days in availability.items():
        server = {a.day: a.count for a in days if _in_range(a.day, since, until)}
        stored = {
            day: n
            for day, n in stored_counts(storage, device, zone).items()
            if _in_range(day, since, until)
        }
        for day in sorted(set(server) | set(stored)):
            report.days_checked += 1
            expected, found = server.get(day, 0), stored.get(day, 0)
            report.server_records += expected
            report.stored_records += found
            if expected != found:
                report.mismatches.append(
                    DayMismatch(device.uuid, device.type, day, expected, found)
                )
    return report


def format_mismatches(mismatches: Iterable[DayMismatch]) -> list[str]:
    return [
        f"MISMATCH {m.device_type} {m.device_uuid} {m.day}: server {m.server_count}, "
        f"stored {m.stored_count} ({m.stored_count - m.server_count:+d})"
        for m in mismatches
    ]
