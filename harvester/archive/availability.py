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
from collections.abc import Iterable, Mapping, Sequence
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
from harvester.models import DayAvailability, Device, DeviceDays
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
    step = np.diff(code)
    if not bool(np.all((step > 0) | ((step == 0) & (np.diff(day) > 0)))):
        # Sort only when copies were merged or a copy repeated a day (a recorded copy is
        # sorted and unique): stable, so the last of equal rows is the last read.
        key = code.astype(np.int64) << 32 | day.astype(np.int64)
        order = np.argsort(key, kind="stable")
        key, code, day, count = key[order], code[order], day[order], count[order]
        last = np.append(key[1:] != key[:-1], True)
        code, day, count = code[last], day[last], count[last]
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
    """Replaces the recorded days of the devices in ``found`` in this shard's copy."""
    key = state_key(shard, AVAILABILITY_NAME)
    kept = _read_table(storage, key) if storage.exists(key) else SCHEMA.empty_table()
    if kept.num_rows:
        listed = pa.array([device.uuid for device in found], pa.string())
        kept = kept.filter(pc.invert(pc.is_in(kept.column("uuid"), value_set=listed)))
    tables = [kept]
    for device, days in found.items():
        compact = days if isinstance(days, DeviceDays) else DeviceDays.of(days)
        tables.append(
            pa.table(
                [
                    pa.array(np.full(len(compact), device.uuid, object), pa.string()),
                    pa.array(compact.days - _EPOCH_ORDINAL, pa.int32()).cast(pa.date32()),
                    pa.array(compact.counts, pa.int64()),
                ],
                schema=SCHEMA,
            )
        )
    merged = pa.concat_tables(tables).sort_by([("uuid", "ascending"), ("day", "ascending")])
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, SCHEMA, options=options) as writer:
        writer.write_table(merged)
    payload = sink.getvalue()
    storage.write_file(key, lambda handle: handle.write(payload))
