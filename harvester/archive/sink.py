"""A device-day's fetched windows → merged into one sorted, de-duplicated zstd Parquet file.

Layout: ``device_type=T/device_id=U/day=D/U_D.parquet``, or with ``--partition month``
``device_type=T/device_id=U/month=YYYY-MM/U_YYYY-MM.parquet`` (hive partitioning; the partition
keys are not stored inside the file; ``U`` is the uuid encoded as ``harvester.archive.layout``
says). A day's rows are merged into the file of its period exactly as a day fetched in pieces is
merged into its day file. Everything goes through the ``Storage`` seam, whose ``write_file`` is
atomic and durable, so a file is replaced whole or not at all and the final key is
deterministic: writing a day again replaces its file.

The unified schema of each device type lives in a ``SchemaRegistry`` persisted under
``_harvest/schema/`` and published as ``<TYPE>.arrow`` (an Arrow IPC schema:
``pyarrow.ipc.read_schema`` reads it). Every file is written on the registry's schema of the
moment. Readers that discover files (pandas, ``pyarrow.dataset``) take a folder's schema from
its first file in path order and cast the others onto it, so after a widening
``ParquetSink.align_files`` rewrites that one file, not the files written before: a widening
costs the same in an archive of any size. Across types the fields differ, so the union of all
types is kept too: ``_harvest/schema/ALL.arrow`` (for readers given an explicit schema, see
``harvester.archive.readers``) and ``ALL.json`` (each field, its type, and its types).

``write_day`` and ``align_files`` are synchronous and CPU-heavy: call them in a worker thread.
Different device-days may be written concurrently: ``write_day`` serializes the days that share
a file (a month's), whose merges would otherwise lose one another's rows. ``align_files`` must
not overlap ``write_day`` calls of its device type.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from harvester.archive.layout import (
    DEFAULT_PARTITION,
    key_device,
    partition_file_key,
)
from harvester.archive.schemas import SchemaRegistry, readers_cast
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.models import Device
from harvester.records.parse import DATE_FIELD, ID_FIELD
from harvester.records.schema import TIMESTAMP, conform, unify

log = structlog.get_logger(__name__)

#: Hive partition keys beside the partition's own (``day`` or ``month``); a source field of
#: the same name as any of them is stored as ``<name>_src``.
DEVICE_KEYS: Final = ("device_type", "device_id")
#: Locks that serialize the writes of one file (a key hashes to one); a few dozen make two
#: different files of the two writer threads share one only rarely.
_FILE_LOCKS: Final = 64
RENAMED_SUFFIX: Final = "_src"
_EMPTY: Final = pa.schema([])
_ONE_DAY: Final = dt.timedelta(days=1)
_ONE_MS: Final = dt.timedelta(milliseconds=1)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class WindowRows:
    """One fetched window ``[start, end)`` and its parsed records (unfiltered, maybe dupes)."""

    start: dt.datetime
    end: dt.datetime
    table: pa.Table


@dataclass(frozen=True)
class DayWriteResult:
    """What ``write_day`` stored.

    ``rows_per_window`` counts the distinct records of each window that fell inside it;
    ``bytes_written`` is 0 when nothing had to be written (no new rows).
    """

    rows_per_window: dict[tuple[dt.datetime, dt.datetime], int]
    rows_in_file: int
    bytes_written: int
    existing_file_unreadable: bool


class ParquetSink:
    """Writes device-days into Parquet files of ``partition`` (``day`` or ``month``)."""

    def __init__(
        self, storage: Storage, schemas: SchemaRegistry, partition: str = DEFAULT_PARTITION
    ) -> None:
        self._storage = storage
        self._schemas = schemas
        self._partition = partition
        self._partition_keys = (*DEVICE_KEYS, partition)
        self._file_locks = [threading.Lock() for _ in range(_FILE_LOCKS)]
        self._lock = threading.Lock()
        self._renames_logged: set[tuple[str, str]] = set()

    def write_day(
        self, device: Device, day: dt.date, windows: Sequence[WindowRows]
    ) -> DayWriteResult:
        """Merges ``windows`` into the file of the day's period (see the module docstring).

        Keeps the rows with ``start <= date < end`` of their window (and inside ``day``),
        unions them with the existing file, keeps the newest copy of each ``_id`` (later
        windows are newer than earlier ones, every window newer than the file), sorts by
        ``date`` then ``_id`` and writes the result on the device type's unified schema.
        """
        key = partition_file_key(device.type, device.uuid, day, self._partition)
        with self._file_locks[hash(key) % _FILE_LOCKS]:
            return self._merge_day(key, device, day, windows)

    def _merge_day(
        self, key: str, device: Device, day: dt.date, windows: Sequence[WindowRows]
    ) -> DayWriteResult:
        day_start = dt.datetime.combine(day, dt.time(), dt.UTC)
        existing = self._read_existing(key)
        unreadable = existing is None and self._storage.exists(key)
        # Pieces are concatenated oldest first; rows outside their window are masked out
        # rather than filtered, so that the only copy of the day is the final take.
        fresh: list[pa.Table] = []
        inside: list[npt.NDArray[np.bool_]] = []
        if existing is not None:
            inside.append(np.ones(existing.num_rows, dtype=np.bool_))
        spans: list[tuple[tuple[dt.datetime, dt.datetime], int, int]] = []
        first_fresh = offset = sum(len(mask) for mask in inside)
        for window in windows:
            mask = _inside(
                window.table, max(window.start, day_start), min(window.end, day_start + _ONE_DAY)
            )
            if not mask.any():
                spans.append(((window.start, window.end), offset, offset))
                continue
            fresh.append(window.table)
            inside.append(mask)
            spans.append(((window.start, window.end), offset, offset + len(mask)))
            offset += len(mask)
        if offset == first_fresh:
            if unreadable:
                self._storage.delete(key)
            kept = 0 if existing is None else existing.num_rows
            return DayWriteResult({span: 0 for span, _, _ in spans}, kept, 0, unreadable)

        pieces = [self._rename_partition_keys(device, table) for table in _join_alike(fresh)]
        if existing is not None:
            pieces.insert(0, existing)
        schema = self._schemas.widen(device.type, reduce(unify, (p.schema for p in pieces)))
        merged = pa.concat_tables([conform(piece, schema) for piece in pieces])
        valid = np.concatenate(inside)
        codes = merged.column(ID_FIELD).combine_chunks().dictionary_encode().indices.to_numpy()
        rows_per_window = {span: _distinct(codes[lo:hi][valid[lo:hi]]) for span, lo, hi in spans}
        table = merged.take(_newest_per_id_sorted(merged, codes, valid))
        written = self._write(key, table)
        log.debug("file_written", key=key, rows=table.num_rows, bytes=written)
        return DayWriteResult(rows_per_window, table.num_rows, written, unreadable)

    def align_files(
        self, device_type: str, owns: Callable[[str], bool] = lambda _uuid: True
    ) -> int:
        """Puts the type's head file on the type's schema; returns how many files it rewrote.

        pandas, ``pyarrow.dataset`` and DuckDB (without ``union_by_name``) take a folder's
        schema from its first file in path order, the head, and cast every other file onto it:
        a head on the unified schema is all they need to see every field, so a widening costs
        one file rewritten, not the folder. Only after a widening they cannot cast older files
        onto (the type's marker says so), or with the type's schema lost, are every file's
        footer read and the files readers could not cast rewritten.

        Rewrites only the files of devices ``owns`` accepts: a shard may rewrite no file that
        another shard's process may be writing at that moment. What is left stays for the
        owner's next run, which checks the head again (and keeps the marker until no file is
        left).
        """
        self._schemas.refresh()
        rewritten = 0
        if self._schemas.unaligned(device_type) or not self._schemas.schema(device_type).names:
            rewritten += self._align_every_file(device_type, owns)
        head = self._schemas.head(device_type)
        if head is None or not self._storage.exists(head):
            head = self._first_file(device_type)
            if head is None:
                return rewritten
            self._schemas.found_head(device_type, head)
        if self._align_head(device_type, head, owns):
            rewritten += 1
        self._schemas.compact(device_type)
        return rewritten

    def _align_head(self, device_type: str, key: str, owns: Callable[[str], bool]) -> bool:
        schema = self._read_schema(key)
        if schema is None:
            return False
        target = self._schemas.widen(device_type, schema)
        if schema.equals(target):
            return False
        if not owns(key_device(key)[1]):
            log.info("head_left_to_its_shard", device_type=device_type, key=key)
            return False
        table = self._read_existing(key)
        if table is None:
            return False
        self._write(key, conform(table, target))
        added = [name for name in target.names if name not in schema.names]
        log.info("head_aligned", device_type=device_type, key=key, new_fields=added)
        return True

    def _align_every_file(self, device_type: str, owns: Callable[[str], bool]) -> int:
        """Rewrites the type's files that readers cannot cast onto its schema (see
        ``readers_cast``), reading every footer: the cost of a conflicting widening only."""
        schemas: dict[str, pa.Schema] = {}
        for key in self._data_files(device_type):
            schema = self._read_schema(key)
            if schema is not None:
                schemas[key] = schema
                self._schemas.widen(device_type, schema)
        target = self._schemas.schema(device_type)
        rewritten = left = 0
        for key, schema in schemas.items():
            if readers_cast(schema, target):
                continue
            if not owns(key_device(key)[1]):
                left += 1
                continue
            table = self._read_existing(key)
            if table is not None:
                self._write(key, conform(table, target))
                rewritten += 1
        self._schemas.aligned(device_type, target, left)
        log.info(
            "files_aligned",
            device_type=device_type,
            files=len(schemas),
            rewritten=rewritten,
            left_to_their_shard=left,
        )
        return rewritten

    def _write(self, key: str, table: pa.Table) -> int:
        buffer = pa.BufferOutputStream()
        # _id and date hold a new value in nearly every row: building a dictionary for them
        # is wasted (the writer falls back to plain), and skipping it writes a SPOD day ~15 %
        # faster and ~12 % smaller. Every other column keeps Parquet's default.
        dictionary = [name for name in table.column_names if name not in (ID_FIELD, DATE_FIELD)]
        pq.write_table(table, buffer, compression="zstd", use_dictionary=dictionary)
        payload = buffer.getvalue()
        self._schemas.note_file(key)
        self._storage.write_file(key, _writer(payload))
        return int(payload.size)

    def _data_files(self, device_type: str) -> list[str]:
        """The type's data files as readers list them: ``.parquet``, in path order, skipping
        what they take as hidden (a segment starting with ``.`` or ``_``)."""
        return [
            key
            for key in self._storage.list_files(f"device_type={device_type}/")
            if key.endswith(".parquet")
            and not any(s.startswith((".", "_")) for s in key.split("/"))
        ]

    def _first_file(self, device_type: str) -> str | None:
        return next(iter(self._data_files(device_type)), None)

    def _read_schema(self, key: str) -> pa.Schema | None:
        """The file's schema from its footer alone (a ranged read on object storage)."""
        try:
            with self._storage.open_input(key) as handle:
                return pq.read_schema(handle).remove_metadata()
        except (pa.ArrowException, OSError, StorageError) as exc:
            log.warning("day_file_unreadable", key=key, error=str(exc))
            return None

    def _read_existing(self, key: str) -> pa.Table | None:
        """The day file's rows, or None when there is none or it cannot be read (logged)."""
        if not self._storage.exists(key):
            return None
        try:
            table = pq.read_table(pa.BufferReader(self._storage.read_bytes(key)))
        except (pa.ArrowException, OSError) as exc:
            log.warning("day_file_unreadable", key=key, error=str(exc))
            return None
        schema = table.schema
        if ID_FIELD not in schema.names or DATE_FIELD not in schema.names:
            log.warning("day_file_unreadable", key=key, error="no _id or date column")
            return None
        if not schema.field(DATE_FIELD).type.equals(TIMESTAMP):
            log.warning("day_file_unreadable", key=key, error="date is not timestamp[ms, UTC]")
            return None
        return table.replace_schema_metadata(None)

    def _rename_partition_keys(self, device: Device, table: pa.Table) -> pa.Table:
        names = list(table.column_names)
        clashes = [name for name in names if name in self._partition_keys]
        if not clashes:
            return table
        for name in clashes:
            renamed = name + RENAMED_SUFFIX
            while renamed in names:
                renamed += RENAMED_SUFFIX
            names[names.index(name)] = renamed
            with self._lock:
                first_time = (device.type, name) not in self._renames_logged
                self._renames_logged.add((device.type, name))
            if first_time:
                log.info(
                    "partition_key_field_renamed",
                    device_type=device.type,
                    field=name,
                    stored_as=renamed,
                )
        return table.rename_columns(names)


def _join_alike(tables: Sequence[pa.Table]) -> list[pa.Table]:
    """``tables`` as one table when they share a schema (the usual case: one unify and one
    conform per day instead of one per window), else unchanged."""
    if len(tables) > 1 and all(t.schema.equals(tables[0].schema) for t in tables[1:]):
        return [pa.concat_tables(tables)]
    return list(tables)


def _inside(table: pa.Table, start: dt.datetime, end: dt.datetime) -> npt.NDArray[np.bool_]:
    """Which rows have ``start <= date < end`` (``date`` is ``timestamp[ms, UTC]``, no nulls)."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.bool_)
    millis = table.column(DATE_FIELD).to_numpy().view(np.int64)
    lo, hi = (int((edge - _EPOCH) // _ONE_MS) for edge in (start, end))
    return np.asarray((millis >= lo) & (millis < hi), dtype=np.bool_)


def _distinct(codes: npt.NDArray[np.int32]) -> int:
    """How many distinct codes. Codes are handed out in first-seen order, so a window of ids
    not seen before is strictly increasing: counted without sorting (np.unique: ~0.7 ms a
    window)."""
    if codes.size < 2 or bool((codes[1:] > codes[:-1]).all()):
        return int(codes.size)
    return int(np.unique(codes).size)


def _newest_per_id_sorted(
    table: pa.Table, codes: npt.NDArray[np.int32], valid: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Row numbers of the last valid row of each ``_id`` (``codes``: its dictionary code;
    rows are oldest first), ordered by ``date`` then ``_id``."""
    newest_first = np.flatnonzero(valid)[::-1]
    _, first_seen = np.unique(codes[newest_first], return_index=True)
    keep = newest_first[first_seen]
    keys = pa.table(
        {"date": table.column(DATE_FIELD).take(keep), "id": table.column(ID_FIELD).take(keep)}
    )
    order = pc.sort_indices(keys, sort_keys=[("date", "ascending"), ("id", "ascending")])
    return np.asarray(keep[order.to_numpy()], dtype=np.int64)


def _writer(payload: pa.Buffer) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(payload)

    return write
