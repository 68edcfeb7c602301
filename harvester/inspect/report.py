"""Coverage of the archive per device and UTC day, for ``harvester report`` (no network).

Sources: the checkpoint (windows finished and failed, the server count each day was planned
against), the day files' footers (rows stored; a month file's ``date`` column, bucketed by
day), ``_harvest/devices.json`` (names) and
``_harvest/availability.arrow`` (the server's days and counts at the last run). With
``--verify`` the server's counts of now replace the recorded ones.

Each device-day gets one state, decided in this order (README "Coverage report")::

    failed       a window of the day gave up after its attempts (the next run retries it)
    complete     rows stored = the server's count, that count > 0 (``models.is_complete_day``)
    partial      some rows stored, but not the server's count
    missing      nothing stored although the server counts rows and the day was fetched
    not fetched  nothing stored, the server counts rows, the checkpoint has no window of it
    no data      the server has no rows that day and nothing is stored (outage, not started)

Long ranges are drawn per ISO week or per month; a period takes its worst day's state
(the order above, failed first, no data last), so one hole is never averaged away.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester.archive.availability import DayCounts
from harvester.archive.checkpoint.state import DayProgress
from harvester.archive.layout import (
    DAY,
    DEVICES_NAME,
    HARVEST_DIR,
    is_temporary,
    parse_file_key,
    state_keys,
)
from harvester.archive.layout import Period as FilePeriod
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.inspect.verify import day_counts
from harvester.models import DEVICE_TYPES, Device, is_complete_day

log = structlog.get_logger(__name__)

_UTC: Final = ZoneInfo("UTC")
#: Beyond these many days a column is an ISO week; beyond the second, a month.
DAYS_PER_DAY_COLUMN: Final = 92
DAYS_PER_WEEK_COLUMN: Final = 3 * 366 + 31


class CellState(enum.IntEnum):
    """A device-day's coverage; a larger value is worse (a period shows its worst day)."""

    NO_DATA = 0
    COMPLETE = 1
    NOT_FETCHED = 2
    PARTIAL = 3
    MISSING = 4
    FAILED = 5

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


#: Fill colour of each state (colour-blind-safe enough: green / grey / amber / red / purple).
STATE_COLOURS: Final = {
    CellState.NO_DATA: "#f4f4f4",
    CellState.COMPLETE: "#2a9d4b",
    CellState.NOT_FETCHED: "#a9b4c2",
    CellState.PARTIAL: "#f2b134",
    CellState.MISSING: "#d7263d",
    CellState.FAILED: "#5b2a86",
}

#: Legend order: what people look for first.
LEGEND_ORDER: Final = (
    CellState.COMPLETE,
    CellState.PARTIAL,
    CellState.MISSING,
    CellState.FAILED,
    CellState.NOT_FETCHED,
    CellState.NO_DATA,
)


@dataclass(frozen=True, slots=True)
class DayCell:
    """One device-day: rows stored, the server's count (0 when it has none), its state."""

    day: dt.date
    stored: int
    expected: int
    windows_failed: int
    state: CellState


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: Device
    cells: dict[dt.date, DayCell]


@dataclass(frozen=True, slots=True)
class Coverage:
    """The whole picture: one row per device, days ``first .. last`` (UTC, inclusive)."""

    rows: list[DeviceRow]
    first: dt.date | None
    last: dt.date | None
    #: "the checkpoint and the last run's discovery" or "the server, now" (``--verify``).
    counts_from: str

    def state_totals(self) -> Counter[CellState]:
        """Device-days of each state over the drawn range, as the picture shows them: a day no
        source knows of (absent from the server's list, nothing stored) is a no-data cell."""
        totals = Counter(cell.state for row in self.rows for cell in row.cells.values())
        if self.first is not None and self.last is not None:
            drawn = ((self.last - self.first).days + 1) * len(self.rows)
            totals[CellState.NO_DATA] += drawn - sum(len(row.cells) for row in self.rows)
        return totals

    @property
    def stored(self) -> int:
        return sum(cell.stored for row in self.rows for cell in row.cells.values())

    @property
    def expected(self) -> int:
        return sum(cell.expected for row in self.rows for cell in row.cells.values())


def classify(stored: int, expected: int, windows_finished: int, windows_failed: int) -> CellState:
    """The state of one device-day (see the module docstring for the definitions)."""
    if is_complete_day(stored, expected, windows_failed):
        return CellState.COMPLETE
    if windows_failed > 0:
        return CellState.FAILED
    if stored > 0:
        return CellState.PARTIAL
    if expected > 0:
        return CellState.MISSING if windows_finished > 0 else CellState.NOT_FETCHED
    return CellState.NO_DATA


def read_devices(storage: Storage) -> list[Device]:
    """The devices the last runs listed, every shard's list merged (empty when none is readable)."""
    devices: dict[str, Device] = {}
    for key in state_keys(storage.list_files(f"{HARVEST_DIR}/"), DEVICES_NAME):
        try:
            listed = orjson.loads(storage.read_bytes(key))
            for d in listed:
                devices[d["uuid"]] = Device(d["uuid"], d["type"], d.get("name") or d["uuid"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("devices_list_unreadable", key=key, error=str(exc))
    return list(devices.values())


def _parse_file_key(key: str) -> tuple[str, str, FilePeriod] | None:
    """``(type, raw uuid, period)`` of a data file; None for temporaries and other files."""
    return None if is_temporary(key) else parse_file_key(key)


def stored_rows(storage: Storage) -> dict[tuple[str, str], dict[dt.date, int]]:
    """Rows stored per (type, uuid) and UTC day: a day file's footer, a month file's dates
    bucketed by day; an unreadable day file counts 0, an unreadable month file nothing."""
    files = [(key, parsed) for key in storage.list_files("") if (parsed := _parse_file_key(key))]

    def rows_by_day(file: tuple[str, tuple[str, str, FilePeriod]]) -> dict[dt.date, int]:
        key, (_, _, period) = file
        try:
            with storage.open_input(key) as handle:
                parquet = pq.ParquetFile(handle)
                if period.partition == DAY:
                    return {period.first: int(parquet.metadata.num_rows)}
                dates = parquet.read(columns=["date"]).column("date")
        except (pa.ArrowException, OSError, StorageError) as exc:
            log.warning("day_file_unreadable", key=key, error=str(exc))
            return {period.first: 0} if period.partition == DAY else {}
        return dict(day_counts(dates, _UTC))

    # Footers are tiny reads: overlapping them matters on object storage, not on a disk.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="report-footer") as pool:
        counts = list(pool.map(rows_by_day, files))
    result: dict[tuple[str, str], dict[dt.date, int]] = {}
    for (_, (device_type, uuid, _)), rows in zip(files, counts, strict=True):
        result.setdefault((device_type, uuid), {}).update(rows)
    return result


def build_coverage(
    devices: Iterable[Device],
    progress: Sequence[DayProgress],
    stored: Mapping[tuple[str, str], Mapping[dt.date, int]],
    server_days: DayCounts,
    *,
    counts_are_current: bool = False,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> Coverage:
    """Joins the sources into one cell per device-day that any of them knows of.

    ``server_days`` holds the server's counts (recorded by the last run, or fetched now when
    ``counts_are_current``). Recorded counts are topped up with the checkpoint's own (a day
    planned against a larger count than was recorded); current counts are taken as they are.
    """
    by_uuid: dict[str, Device] = {}
    for device in devices:
        by_uuid.setdefault(device.uuid, device)
    for entry in progress:
        by_uuid.setdefault(entry.device_uuid, Device(entry.device_uuid, entry.device_type, ""))
    for device_type, uuid in stored:
        if device_type in DEVICE_TYPES:
            by_uuid.setdefault(uuid, Device(uuid, device_type, ""))
    checkpoint = {(d.device_uuid, d.day): d for d in progress}
    rows: list[DeviceRow] = []
    for device in sorted(by_uuid.values(), key=lambda d: (d.type, d.name or d.uuid, d.uuid)):
        on_disk = stored.get((device.type, device.uuid), {})
        counts = server_days.get(device.uuid, {})
        days = set(on_disk) | set(counts)
        days |= {day for uuid, day in checkpoint if uuid == device.uuid}
        cells: dict[dt.date, DayCell] = {}
        for day in sorted(days):
            if (since and day < since) or (until and day > until):
                continue
            known = checkpoint.get((device.uuid, day))
            finished = known.windows_finished if known else 0
            failed = known.windows_failed if known else 0
            expected = counts.get(day, 0)
            if not counts_are_current and known is not None:
                expected = max(expected, known.day_count)
            rows_stored = on_disk.get(day, 0)
            state = classify(rows_stored, expected, finished, failed)
            cells[day] = DayCell(day, rows_stored, expected, failed, state)
        rows.append(DeviceRow(device, cells))
    all_days = [day for row in rows for day in row.cells]
    source = "the server, now" if counts_are_current else "the checkpoint and the last run"
    return Coverage(rows, min(all_days, default=None), max(all_days, default=None), source)


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True, slots=True)
class Period:
    """One column of the picture: the days ``first .. last`` (inclusive)."""

    first: dt.date
    last: dt.date
    label: str


@dataclass(slots=True)
class PeriodCell:
    """A device over one period: its worst day, and how many days of each state it holds."""

    state: CellState = CellState.NO_DATA
    stored: int = 0
    expected: int = 0
    days: Counter[CellState] = field(default_factory=Counter)


def periods(first: dt.date, last: dt.date) -> tuple[str, list[Period]]:
    """Columns for ``first .. last``: days, ISO weeks or months, as the span requires."""
    span = (last - first).days + 1
    columns: list[Period] = []
    if span <= DAYS_PER_DAY_COLUMN:
        for offset in range(span):
            day = first + dt.timedelta(days=offset)
            columns.append(Period(day, day, day.isoformat()))
        return "day", columns
    if span <= DAYS_PER_WEEK_COLUMN:
        start = first - dt.timedelta(days=first.weekday())
        while start <= last:
            end = start + dt.timedelta(days=6)
            year, week, _ = start.isocalendar()
            columns.append(Period(max(start, first), min(end, last), f"{year}-W{week:02d}"))
            start = end + dt.timedelta(days=1)
        return "week", columns
    month = first.replace(day=1)
    while month <= last:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        end = following - dt.timedelta(days=1)
        columns.append(Period(max(month, first), min(end, last), f"{month:%Y-%m}"))
        month = following
    return "month", columns


def aggregate(row: DeviceRow, columns: Sequence[Period]) -> list[PeriodCell]:
    """The row's cells folded into ``columns`` (days outside every column are ignored)."""
    cells = [PeriodCell() for _ in columns]
    starts = [column.first for column in columns]
    for day, cell in row.cells.items():
        index = _column_of(starts, day)
        if index is None or day > columns[index].last:
            continue
        target = cells[index]
        target.state = max(target.state, cell.state)
        target.stored += cell.stored
        target.expected += cell.expected
        target.days[cell.state] += 1
    return cells


def _column_of(starts: Sequence[dt.date], day: dt.date) -> int | None:
    index = bisect.bisect_right(starts, day) - 1
    return index if index >= 0 else None


def summary_line(coverage: Coverage) -> str:
    """One line of totals: device-days per state and stored vs server records."""
    totals = coverage.state_totals()
    parts = [f"{totals[state]:,} {state.label}" for state in LEGEND_ORDER if totals[state]]
    share = f" ({coverage.stored / coverage.expected:.1%})" if coverage.expected else ""
    return (
        f"{len(coverage.rows)} devices, device-days: {', '.join(parts) or 'none'}; "
        f"stored {coverage.stored:,} of {coverage.expected:,} server records{share}"
    )
