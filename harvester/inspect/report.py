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

Everything per device-day is held as numpy columns (``DayCells``), joined (``report_join``),
classified and folded into periods (``report_periods``) vectorised: a fleet of 1,000 devices
over 5 years is 1.4 million device-days, which as one Python object each took well over a
gigabyte.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester.archive.layout import (
    DAY,
    DEVICES_NAME,
    HARVEST_DIR,
    device_prefix,
    is_temporary,
    parse_device_prefix,
    parse_file_key,
    state_keys,
)
from harvester.archive.layout import Period as FilePeriod
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.inspect.verify import utc_day_counts
from harvester.models import Device, is_complete_day, last_of_each_device_day

log = structlog.get_logger(__name__)

#: Files whose footers are read per batch: the pool's futures for a million day files at once
#: would cost more than the coverage itself.
_FILES_PER_BATCH: Final = 4096


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
class DayCells:
    """Every device-day some source knows of, as columns sorted by (device, day)."""

    device: npt.NDArray[np.int32]
    """Index into ``Coverage.devices``."""
    day: npt.NDArray[np.int32]
    """``date.toordinal()`` of the UTC day."""
    stored: npt.NDArray[np.int64]
    expected: npt.NDArray[np.int64]
    """The server's count (0 when it has none)."""
    state: npt.NDArray[np.int8]
    """A ``CellState`` value."""

    def __len__(self) -> int:
        return len(self.day)

    def take(self, rows: npt.NDArray[np.bool_], renumber: npt.NDArray[np.int32]) -> DayCells:
        """The cells where ``rows`` holds, device ``i`` becoming ``renumber[i]``."""
        return DayCells(
            renumber[self.device[rows]],
            self.day[rows],
            self.stored[rows],
            self.expected[rows],
            self.state[rows],
        )


@dataclass(frozen=True, slots=True)
class Coverage:
    """The whole picture: one row per device, days ``first .. last`` (UTC, inclusive)."""

    devices: list[Device]
    cells: DayCells
    first: dt.date | None
    last: dt.date | None
    #: "the checkpoint and the last run's discovery" or "the server, now" (``--verify``).
    counts_from: str

    def state_totals(self) -> Counter[CellState]:
        """Device-days of each state over the drawn range, as the picture shows them: a day no
        source knows of (absent from the server's list, nothing stored) is a no-data cell."""
        counts = np.bincount(self.cells.state, minlength=len(CellState)).tolist()
        totals = Counter({CellState(state): n for state, n in enumerate(counts) if n})
        if self.first is not None and self.last is not None:
            drawn = ((self.last - self.first).days + 1) * len(self.devices)
            totals[CellState.NO_DATA] += drawn - len(self.cells)
        return totals

    @property
    def stored(self) -> int:
        return int(self.cells.stored.sum())

    @property
    def expected(self) -> int:
        return int(self.cells.expected.sum())

    def select(self, keep: Callable[[Device], bool]) -> Coverage:
        """The devices ``keep`` accepts, with their cells; the drawn range stays as it was."""
        kept = [index for index, device in enumerate(self.devices) if keep(device)]
        if len(kept) == len(self.devices):
            return self
        renumber = np.full(len(self.devices), -1, np.int32)
        renumber[kept] = np.arange(len(kept), dtype=np.int32)
        cells = self.cells.take(renumber[self.cells.device] >= 0, renumber)
        devices = [self.devices[index] for index in kept]
        return Coverage(devices, cells, self.first, self.last, self.counts_from)


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


def classify_days(
    stored: npt.NDArray[np.int64],
    expected: npt.NDArray[np.int64],
    windows_finished: npt.NDArray[np.int32],
    windows_failed: npt.NDArray[np.int32],
) -> npt.NDArray[np.int8]:
    """``classify`` element-wise: the rules are applied from the last to the first, so the
    first that holds is the one left (the same order, one pass over the arrays each)."""
    state = np.full(len(stored), CellState.NO_DATA, np.int8)
    counted = expected > 0
    state[counted & (windows_finished == 0)] = CellState.NOT_FETCHED
    state[counted & (windows_finished > 0)] = CellState.MISSING
    state[stored > 0] = CellState.PARTIAL
    state[windows_failed > 0] = CellState.FAILED
    state[is_complete_day(stored, expected, windows_failed)] = CellState.COMPLETE
    return state


# --------------------------------------------------------------------------- sources


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


@dataclass(frozen=True, slots=True)
class StoredRows:
    """Rows stored per device-day as columns, sorted by (device, day)."""

    devices: list[tuple[str, str]]
    """(type, uuid) of each device folder, in the order the listing met them; ``code``
    indexes it."""
    code: npt.NDArray[np.int32]
    day: npt.NDArray[np.int32]
    """``date.toordinal()`` of the UTC day."""
    rows: npt.NDArray[np.int64]

    def by_device(self) -> dict[tuple[str, str], dict[dt.date, int]]:
        """These rows as dicts per (type, uuid), for small archives and tests."""
        result: dict[tuple[str, str], dict[dt.date, int]] = {}
        for code, day, rows in zip(
            self.code.tolist(), self.day.tolist(), self.rows.tolist(), strict=True
        ):
            result.setdefault(self.devices[code], {})[dt.date.fromordinal(day)] = rows
        return result


_Counts = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]


def _rows_by_day(storage: Storage, key: str, period: FilePeriod) -> _Counts:
    """(days, rows) of one data file: a day file's footer, a month file's dates bucketed by
    UTC day; an unreadable day file counts 0, an unreadable month file nothing."""
    try:
        with storage.open_input(key) as handle:
            parquet = pq.ParquetFile(handle)
            if period.partition == DAY:
                rows = np.array([parquet.metadata.num_rows], np.int64)
                return np.array([period.first.toordinal()], np.int32), rows
            # The pool is the parallelism: pyarrow's own threads, for a month's few thousand
            # dates, cost more CPU than they save (1.3 against 0.5 ms a file, 8 readers).
            dates = parquet.read(columns=["date"], use_threads=False).column("date")
        return utc_day_counts(dates)
    except (pa.ArrowException, OSError, StorageError) as exc:
        log.warning("day_file_unreadable", key=key, error=str(exc))
        if period.partition == DAY:
            return np.array([period.first.toordinal()], np.int32), np.zeros(1, np.int64)
        return np.zeros(0, np.int32), np.zeros(0, np.int64)


def device_folders(storage: Storage) -> list[tuple[str, str]]:
    """``(type, uuid)`` of every device folder of the archive, in listing order."""
    return [
        device
        for top in storage.list_folders()
        if top != f"{HARVEST_DIR}/"
        for folder in storage.list_folders(top)
        if (device := parse_device_prefix(folder)) is not None
    ]


def read_stored(storage: Storage, folders: Sequence[tuple[str, str]] | None = None) -> StoredRows:
    """Rows stored per (type, uuid) and UTC day, from every data file of the device folders
    ``folders`` (every device folder when None; see ``_rows_by_day``). Where two files hold
    the same day (a day file beside a month file), the later listed wins.
    """
    if folders is None:
        folders = device_folders(storage)
    devices: dict[tuple[str, str], int] = {}
    codes, days, counts = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)], [np.zeros(0, np.int64)]

    def count(file: tuple[str, tuple[str, str, FilePeriod]]) -> _Counts:
        key, (_, _, period) = file
        return _rows_by_day(storage, key, period)

    # Footers are tiny reads: overlapping them matters on object storage, not on a disk.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="report-footer") as pool:
        listed = pool.map(lambda folder: storage.list_files(device_prefix(*folder)), folders)
        keys = [key for keys in listed for key in keys]
        for start in range(0, len(keys), _FILES_PER_BATCH):
            files = [
                (key, parsed)
                for key in keys[start : start + _FILES_PER_BATCH]
                if (parsed := _parse_file_key(key)) is not None
            ]
            found = list(pool.map(count, files))
            owners = [
                devices.setdefault((kind, uuid), len(devices)) for _, (kind, uuid, _) in files
            ]
            codes.append(np.repeat(np.asarray(owners, np.int32), [len(d) for d, _ in found]))
            # A batch's arrays made one: two a file (~200 bytes) held for a part's 90,000 day
            # files were ~18 MB.
            days.append(np.concatenate([days[0], *(file_days for file_days, _ in found)]))
            counts.append(np.concatenate([counts[0], *(rows for _, rows in found)]))
    code, day, rows = np.concatenate(codes), np.concatenate(days), np.concatenate(counts)
    # The listing is sorted, so a device's files come together and in day order; only a day
    # file beside a month file breaks it, and the later listed of the day wins.
    code, day, rows = last_of_each_device_day(code, day, rows)
    return StoredRows(list(devices), code, day, rows)


def _parse_file_key(key: str) -> tuple[str, str, FilePeriod] | None:
    """``(type, raw uuid, period)`` of a data file; None for temporaries and other files."""
    return None if is_temporary(key) else parse_file_key(key)


def stored_rows(storage: Storage) -> dict[tuple[str, str], dict[dt.date, int]]:
    """``read_stored`` as dicts per (type, uuid) and UTC day, for small archives and tests."""
    return read_stored(storage).by_device()


def summary_line(coverage: Coverage) -> str:
    """One line of totals: device-days per state and stored vs server records."""
    totals = coverage.state_totals()
    parts = [f"{totals[state]:,} {state.label}" for state in LEGEND_ORDER if totals[state]]
    share = f" ({coverage.stored / coverage.expected:.1%})" if coverage.expected else ""
    return (
        f"{len(coverage.devices)} devices, device-days: {', '.join(parts) or 'none'}; "
        f"stored {coverage.stored:,} of {coverage.expected:,} server records{share}"
    )
