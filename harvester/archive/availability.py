"""The server's available days, as last seen by a run: ``_harvest/availability.json``.

``harvester report`` needs to know which days the server has, to tell "not fetched yet" from
"no data", without asking the network. Each run records what discovery found (UTC days and
their record counts), merged per device with what earlier runs recorded, so a run limited to
some devices does not forget the others.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import orjson
import structlog

from harvester.archive.layout import AVAILABILITY_NAME, HARVEST_DIR, state_key, state_keys
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.models import DayAvailability, Device
from harvester.plan.shards import Shard

log = structlog.get_logger(__name__)

#: Per device uuid, the server's record count of each UTC day it has data for.
DayCounts = dict[str, dict[dt.date, int]]


def _read_one(storage: Storage, key: str) -> DayCounts:
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
    merged: DayCounts = {}
    for key in state_keys(storage.list_files(f"{HARVEST_DIR}/"), AVAILABILITY_NAME):
        merged.update(_read_one(storage, key))
    return merged


def record_availability(
    storage: Storage, found: Mapping[Device, Sequence[DayAvailability]], shard: Shard | None
) -> None:
    """Replaces the recorded days of the devices in ``found`` in this shard's copy."""
    key = state_key(shard, AVAILABILITY_NAME)
    try:
        merged = _read_one(storage, key) if storage.exists(key) else {}
    except StorageError as exc:
        log.warning("availability_unreadable", key=key, error=str(exc))
        merged = {}
    for device, days in found.items():
        merged[device.uuid] = {a.day: a.count for a in days}
    body = {
        "note": "server record count per UTC day, as last discovered by harvester run",
        "devices": {
            uuid: {day.isoformat(): count for day, count in sorted(days.items())}
            for uuid, days in sorted(merged.items())
        },
    }
    payload = orjson.dumps(body)
    storage.write_file(key, lambda handle: handle.write(payload))
