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
from collections.abc import Mapping, Sequence

import numpy as np
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
