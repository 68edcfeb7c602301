"""The server's days as last discovered: recorded per device, merged across runs and shards."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson

from harvester.archive.availability import read_availability, record_availability
from harvester.archive.storage import LocalStorage
from harvester.models import DayAvailability, Device, DeviceDays
from harvester.plan.shards import Shard

DAY = dt.date(2024, 3, 1)
A, B = Device("a-1", "FMD", "A"), Device("b-2", "SPOD", "B")


def _days(*counts: int) -> DeviceDays:
    return DeviceDays.of(
        DayAvailability(
            DAY + dt.timedelta(days=i),
            count,
            dt.datetime.combine(DAY + dt.timedelta(days=i), dt.time(23), dt.UTC),
        )
        for i, count in enumerate(counts)
    )


def test_a_later_run_replaces_its_devices_and_keeps_the_others(tmp_path: Path) -> None:
    """Recording B after A and B keeps A's days and replaces B's; days read back as dates."""
    storage = LocalStorage(tmp_path)
    record_availability(storage, {A: _days(10, 20), B: _days(5)}, None)
    record_availability(
        storage, {B: [DayAvailability(DAY, 7, dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC))]}, None
    )
    assert read_availability(storage) == {
        "a-1": {DAY: 10, DAY + dt.timedelta(days=1): 20},
        "b-2": {DAY: 7},
    }


def test_shards_keep_their_own_copies_and_readers_merge_them(tmp_path: Path) -> None:
    """Each shard writes its own copy; reading merges every copy."""
    storage = LocalStorage(tmp_path)
    record_availability(storage, {A: _days(1)}, Shard(0, 2))
    record_availability(storage, {B: _days(2)}, Shard(1, 2))
    assert len(list(tmp_path.joinpath("_harvest").glob("availability.shard-*.arrow"))) == 2
    assert read_availability(storage) == {"a-1": {DAY: 1}, "b-2": {DAY: 2}}


def test_the_json_copy_of_earlier_versions_is_still_read(tmp_path: Path) -> None:
    """An archive written before the Parquet copy keeps its recorded days, and a new record
    of some devices wins over the old copy for those devices."""
    storage = LocalStorage(tmp_path)
    legacy = {"devices": {"a-1": {"2024-03-01": 4}, "b-2": {"2024-03-01": 9}}}
    storage.write_file("_harvest/availability.json", lambda h: h.write(orjson.dumps(legacy)))
    assert read_availability(storage) == {"a-1": {DAY: 4}, "b-2": {DAY: 9}}
    record_availability(storage, {B: _days(3)}, None)
    assert read_availability(storage) == {"a-1": {DAY: 4}, "b-2": {DAY: 3}}
