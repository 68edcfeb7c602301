"""The server's available days, as last seen by a run: ``_harvest/availability.arrow``.

``harvester report`` needs to know which days the server has, to tell "not fetched yet" from
"no data", without asking the network. Each run records what discovery found (UTC days and
their record counts), merged per device with what earlier runs recorded, so a run limited to
some devices does not forget the others.

One row per device-day (``uuid``, ``day``, ``count``), built from the discovered arrays: a fleet
of 1,000 devices over 5 years is 1.4 million rows, ~10 MB in memory and a few MB on disk, where
the JSON copy earlier runs wrote (``availability.json``, still read) took hundreds of MB to
build as Python objects. An Arrow IPC file, not Parquet: the README's queries glob
``OUT/**/*.parquet``, which must find data files only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from harvester.archive.layout import (
    AVAILABILITY_NAME,
    HARVEST_DIR,
    LEGACY_AVAILABILITY_NAME,
    state_key,
    state_keys,
)
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.models import DayAvailability, Device, DeviceDays, last_of_each_device_day
from harvester.plan.shards import Shard

log = structlog.get_logger(__name__)

#: Per device uuid, the server's record count of each UTC day it has data for.
DayCounts = dict[str, dict[dt.date, int]]

SCHEMA = pa.schema([("uuid", pa.string()), ("day", pa.date32()), ("count", pa.int64())])
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EMPTY = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int64))
_SYSTEM = pa.system_memory_pool()


def _read_table(storage: Storage, key: str) -> pa.Table:
    try:
        with pa.ipc.open_file(pa.py_buffer(storage.read_bytes(key))) as reader:
            return reader.read_all().cast(SCHEMA)
    except (pa.ArrowException, StorageError, OSError) as exc:
        log.warning("availability_unreadable", key=key, error=str(exc))
        return SCHEMA.empty_table()


def _read_legacy(storage: Storage, key: str) -> DayCounts:
    try:
        raw = orjson.loads(storage.read_bytes(key))
        return {
            uuid: {dt.date.fromisoformat(day): int(count) for day, count in days.items()}
            for uuid, days in raw["devices"].items()
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("availability_unreadable", key=key, error=str(exc))
        return {}


def read_availability(storage: Storage) -> DayCounts:
    """What the runs recorded, every shard's copy merged (empty when nothing was)."""
    keys = storage.list_files(f"{HARVEST_DIR}/")
    merged: DayCounts = {}
    for key in state_keys(keys, LEGACY_AVAILABILITY_NAME):
        merged.update(_read_legacy(storage, key))
    for key in state_keys(keys, AVAILABILITY_NAME):
        table = _read_table(storage, key)
        found: DayCounts = {}
        for uuid, day, count in zip(
            *(table.column(name).to_pylist() for name in SCHEMA.names), strict=True
        ):
            found.setdefault(uuid, {})[day] = count
        merged.update(found)
    return merged


@dataclass(frozen=True, slots=True)
class AvailabilityColumns:
    """What the runs recorded, as columns: one row per device-day (sorted by uuid and day once
    merged, as every reader returns them).

    What ``report`` joins: 16 bytes a device-day, where ``DayCounts`` costs hundreds.
    """

    uuids: list[str]
    """``code`` indexes it (sorted, once merged). A device listed with no day is still listed:
    it replaces what an earlier copy recorded of it."""
    code: npt.NDArray[np.int32]
    day: npt.NDArray[np.int32]
    """``date.toordinal()`` of the UTC day."""
    count: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.day)

    @classmethod
    def of(cls, found: Iterable[tuple[str, DeviceDays]]) -> AvailabilityColumns:
        """Per-device arrays as columns (a uuid given twice keeps its last days)."""
        parts = [
            cls([uuid], np.zeros(len(days), np.int32), days.days, days.counts)
            for uuid, days in found
        ]
        return merge_columns(parts)


def merge_columns(copies: Sequence[AvailabilityColumns]) -> AvailabilityColumns:
    """Copies merged as ``read_availability`` merges them: a device's days are those of the
    last copy that lists it; within a copy, the last row of a day wins."""
    uuids = sorted({uuid for copy in copies for uuid in copy.uuids})
    rank = {uuid: i for i, uuid in enumerate(uuids)}
    latest = np.full(len(uuids), -1, np.int32)
    for index, copy in enumerate(copies):
        latest[[rank[uuid] for uuid in copy.uuids]] = index
    parts = []
    for index, copy in enumerate(copies):
        code = np.asarray([rank[uuid] for uuid in copy.uuids], np.int32).take(copy.code)
        kept = latest.take(code) == index
        if kept.all():  # one copy, or devices no later copy lists: no row to copy
            parts.append((code, copy.day, copy.count))
        else:
            parts.append((code[kept], copy.day[kept], copy.count[kept]))
    if len(parts) == 1:
        code, day, count = parts[0]
    else:
        code, day, count = (np.concatenate(c) for c in zip(_EMPTY, *parts, strict=True))
    # A recorded copy is sorted and unique: only merged copies, or a copy that repeated a
    # day, are sorted, the last of equal rows being the last read.
    code, day, count = last_of_each_device_day(code, day, count)
    return AvailabilityColumns(uuids, code, day, count)


def _read_columns(storage: Storage, key: str) -> AvailabilityColumns:
    """One recorded copy as columns. The uuid column is read alone and turned into codes
    before the others: as text it is most of the file's memory (36 bytes a row). It is read
    with the system allocator, which gives those bytes back once they are codes (pyarrow's
    default allocator keeps them for its own later use)."""
    try:
        buffer = pa.py_buffer(storage.read_bytes(key))
        with pa.ipc.open_file(buffer) as reader:
            fields = {name: [reader.schema.get_field_index(name)] for name in SCHEMA.names}
        uuids: dict[str, int] = {}
        codes = [np.zeros(0, np.int32)]
        for batch in _batches(buffer, fields["uuid"]):
            text = batch.column(0).cast(pa.string(), memory_pool=_SYSTEM)
            encoded = pc.dictionary_encode(text, memory_pool=_SYSTEM)
            remap = [uuids.setdefault(uuid, len(uuids)) for uuid in encoded.dictionary.to_pylist()]
            indices = encoded.indices.to_numpy(zero_copy_only=False)
            codes.append(np.asarray(remap, np.int32)[indices])
        days = [np.zeros(0, np.int32)]
        counts = [np.zeros(0, np.int64)]
        for batch in _batches(buffer, fields["day"] + fields["count"]):
            days.append(batch.column(0).cast(pa.date32()).cast(pa.int32()).to_numpy())
            counts.append(batch.column(1).cast(pa.int64()).to_numpy())
    except (pa.ArrowException, StorageError, OSError) as exc:
        log.warning("availability_unreadable", key=key, error=str(exc))
        return AvailabilityColumns([], *_EMPTY)
    day = np.concatenate(days)
    day += _EPOCH_ORDINAL
    return AvailabilityColumns(list(uuids), np.concatenate(codes), day, np.concatenate(counts))


def _batches(buffer: pa.Buffer, fields: list[int]) -> Iterable[pa.RecordBatch]:
    options = pa.ipc.IpcReadOptions(included_fields=fields)
    with pa.ipc.open_file(buffer, options=options, memory_pool=_SYSTEM) as reader:
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def _legacy_columns(counts: DayCounts) -> AvailabilityColumns:
    """The JSON copy of earlier versions as columns (it is read as objects anyway)."""
    rows = [
        (code, day.toordinal(), n)
        for code, days in enumerate(counts.values())
        for day, n in days.items()
    ]
    table = np.array(rows, np.int64).reshape(-1, 3)
    return AvailabilityColumns(
        list(counts), table[:, 0].astype(np.int32), table[:, 1].astype(np.int32), table[:, 2]
    )


def read_availability_columns(storage: Storage) -> AvailabilityColumns:
    """``read_availability`` as columns, merged the same way (empty when nothing was recorded)."""
    keys = storage.list_files(f"{HARVEST_DIR}/")
    copies = [
        _legacy_columns(_read_legacy(storage, key))
        for key in state_keys(keys, LEGACY_AVAILABILITY_NAME)
    ]
    copies += [_read_columns(storage, key) for key in state_keys(keys, AVAILABILITY_NAME)]
    return merge_columns(copies)


def record_availability(
    storage: Storage, found: Mapping[Device, Sequence[DayAvailability]], shard: Shard | None
) -> None:
    """Replaces the recorded days of the devices in ``found`` in this shard's copy.

    A run over the whole fleet finds again every device the copy lists: the copy's uuid
    column alone is read then, and the found rows are written device by device in uuid
    order, a batch at a time, without a sort (1.4 M rows: the sort and the copies of every
    row it took were the peak of a resumed run's memory).
    """
    key = state_key(shard, AVAILABILITY_NAME)
    kept = _kept_rows(storage, key, found)
    devices = sorted(found.items(), key=lambda item: item[0].uuid)
    parts = [(device.uuid, _compact(days)) for device, days in devices]
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, SCHEMA, options=options) as writer:
        if kept.num_rows or not _in_order(parts):
            rows = pa.Table.from_batches(list(_found_batches(parts)), SCHEMA)
            merged = pa.concat_tables([kept, rows])
            writer.write_table(merged.sort_by([("uuid", "ascending"), ("day", "ascending")]))
        else:
            for batch in _found_batches(parts):
                writer.write_batch(batch)
    payload = sink.getvalue()
    storage.write_file(key, lambda handle: handle.write(payload))


#: Rows of a batch of found devices written at once (whole devices: a batch may hold more).
_BATCH_ROWS = 1 << 18


def _compact(days: Sequence[DayAvailability]) -> DeviceDays:
    return days if isinstance(days, DeviceDays) else DeviceDays.of(days)


def _kept_rows(
    storage: Storage, key: str, found: Mapping[Device, Sequence[DayAvailability]]
) -> pa.Table:
    """The rows of the copy at ``key`` of devices not in ``found``; its day and count columns
    are read only when it holds such a row."""
    if not storage.exists(key):
        return SCHEMA.empty_table()
    listed = pa.array([device.uuid for device in found], pa.string())
    try:
        buffer = pa.py_buffer(storage.read_bytes(key))
        with pa.ipc.open_file(buffer) as reader:
            uuid = reader.schema.get_field_index("uuid")
        if uuid >= 0 and all(_among(batch.column(0), listed) for batch in _batches(buffer, [uuid])):
            return SCHEMA.empty_table()
        with pa.ipc.open_file(buffer) as reader:
            table = reader.read_all().cast(SCHEMA)
    except (pa.ArrowException, StorageError, OSError) as exc:
        log.warning("availability_unreadable", key=key, error=str(exc))
        return SCHEMA.empty_table()
    return table.filter(pc.invert(pc.is_in(table.column("uuid"), value_set=listed)))


def _among(uuids: pa.Array, listed: pa.Array) -> bool:
    """Is every one of ``uuids`` one of ``listed``."""
    return bool(pc.all(pc.is_in(uuids.cast(pa.string()), value_set=listed), min_count=0).as_py())


def _in_order(parts: Sequence[tuple[str, DeviceDays]]) -> bool:
    """Are the rows of ``parts`` (in uuid order) sorted by uuid and day as recorded: each
    uuid once, its days ascending."""
    return len({uuid for uuid, _ in parts}) == len(parts) and all(
        bool(np.all(days.days[1:] >= days.days[:-1])) for _, days in parts
    )


def _found_batches(parts: Sequence[tuple[str, DeviceDays]]) -> Iterator[pa.RecordBatch]:
    """The rows of ``parts``, in their order, in batches of whole devices of about
    ``_BATCH_ROWS`` rows; each batch's uuid column is taken from its devices' uuids by row.
    A batch's columns are put together by Arrow (whose memory goes back once written), from
    each device's arrays."""
    start = rows = 0
    for end, (_, days) in enumerate(parts, 1):
        rows += len(days)
        if rows >= _BATCH_ROWS or end == len(parts):
            group = parts[start:end]
            uuids = pa.array([uuid for uuid, _ in group], pa.string())
            code = [pa.array(np.full(len(d), i, np.int32)) for i, (_, d) in enumerate(group)]
            day = [pa.array(d.days - _EPOCH_ORDINAL, pa.int32()) for _, d in group]
            count = [pa.array(d.counts, pa.int64()) for _, d in group]
            yield pa.record_batch(
                [
                    uuids.take(pa.concat_arrays([pa.array([], pa.int32()), *code])),
                    pa.concat_arrays([pa.array([], pa.int32()), *day]).cast(pa.date32()),
                    pa.concat_arrays([pa.array([], pa.int64()), *count]),
                ],
                schema=SCHEMA,
            )
            start, rows = end, 0
