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

from harvester.errors import StorageError
from harvester.models import DayAvailability, Device
from harvester.storage import Storage

log = structlog.get_logger(__name__)

AVAILABILITY_KEY = "_harvest/availability.json"

#: Per device uuid, the server's record count of each UTC day it has data for.
DayCounts = dict[str, dict[dt.date, int]]


def read_availability(storage: Storage) -> DayCounts:
    """What the runs recorded (empty when nothing was, or the file is unreadable: logged)."""
    if not storage.exists(AVAILABILITY_KEY):
        return {}
    try:
        raw = orjson.loads(storage.read_bytes(AVAILABILITY_KEY))
        return {
            uuid: {dt.date.fromisoformat(day): int(count) for day, count in days.items()}
            for uuid, days in raw["devices"].items()
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("availability_unreadable", key=AVAILABILITY_KEY, error=str(exc))
        return {}


def record_availability(
    storage: Storage, found: Mapping[Device, Sequence[DayAvailability]]
) -> None:
    """Replaces the recorded days of the devices in ``found``; keeps the others."""
    try:
        merged = read_availability(storage)
    except StorageError as exc:
        log.warning("availability_unreadable", key=AVAILABILITY_KEY, error=str(exc))
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
    storage.write_file(AVAILABILITY_KEY, lambda handle: handle.write(payload))
