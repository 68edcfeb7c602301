"""The server's days as last discovered: recorded per device, merged across runs and shards."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.archive import availability
from harvester.archive.availability import (
    SCHEMA,
    read_availability,
    read_availability_columns,
    record_availability,
)
from harvester.archive.layout import state_key
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


def _recorded(storage: LocalStorage) -> pa.Table:
    key = state_key(None, "availability.arrow")
    with pa.ipc.open_file(pa.py_buffer(storage.read_bytes(key))) as reader:
        return reader.read_all()


def _sorted_whole(kept: pa.Table, found: dict[Device, DeviceDays]) -> pa.Table:
    """Every row, kept ones first and then device by device, sorted by uuid and day (stable):
    what the recorded copy must hold, however its rows were put together."""
    if kept.num_rows:
        listed = pa.array([device.uuid for device in found], pa.string())
        kept = kept.filter(pc.invert(pc.is_in(kept.column("uuid"), value_set=listed)))
    tables = [kept] + [
        pa.table(
            [
                pa.array([device.uuid] * len(days), pa.string()),
                pa.array(days.days - dt.date(1970, 1, 1).toordinal(), pa.int32()).cast(pa.date32()),
                pa.array(days.counts, pa.int64()),
            ],
            schema=SCHEMA,
        )
        for device, days in found.items()
    ]
    return pa.concat_tables(tables).sort_by([("uuid", "ascending"), ("day", "ascending")])


_DEVICES = st.lists(
    st.tuples(
        st.sampled_from(["a-1", "b-2", "c-3", "Z"]),
        st.sampled_from(["FMD", "SPOD"]),
        st.lists(st.tuples(st.integers(0, 9), st.integers(0, 99)), max_size=6),
    ),
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=_DEVICES, now=_DEVICES, batch_rows=st.sampled_from([1, 3, 1 << 18]))
def test_the_recorded_copy_is_sorted_by_uuid_and_day_however_the_days_come(
    tmp_path_factory: pytest.TempPathFactory,
    before: list[tuple[str, str, list[tuple[int, int]]]],
    now: list[tuple[str, str, list[tuple[int, int]]]],
    batch_rows: int,
) -> None:
    """Whatever a run found (days out of order or repeated, a uuid under two types, devices
    with no day) and whatever an earlier run recorded, the copy holds the rows of every
    device, sorted by uuid and day, repeated days in the order found: as sorting them all
    gives (a fleet's rows, found in uuid order and sorted, are written without a sort, a
    batch of whole devices at a time), and the readers read it back whole."""
    storage = LocalStorage(tmp_path_factory.mktemp("availability"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(availability, "_BATCH_ROWS", batch_rows)
        _record_twice(storage, found_of(before), found_of(now))


def found_of(devices: list[tuple[str, str, list[tuple[int, int]]]]) -> dict[Device, DeviceDays]:
    return {
        Device(uuid, kind, ""): DeviceDays(
            np.array([DAY.toordinal() + day for day, _ in days], np.int32),
            np.array([count for _, count in days], np.int64),
            np.zeros(len(days), np.int64),
        )
        for uuid, kind, days in devices
    }


def _record_twice(
    storage: LocalStorage, before: dict[Device, DeviceDays], now: dict[Device, DeviceDays]
) -> None:
    record_availability(storage, before, None)
    kept = _recorded(storage)
    assert kept.equals(_sorted_whole(SCHEMA.empty_table(), before))
    record_availability(storage, now, None)
    recorded = _recorded(storage)
    assert recorded.equals(_sorted_whole(kept, now))
    expected: dict[str, dict[dt.date, int]] = {}
    names = (recorded.column(name).to_pylist() for name in SCHEMA.names)
    for uuid, day, count in zip(*names, strict=True):
        expected.setdefault(uuid, {})[day] = count
    assert read_availability(storage) == expected
    columns = read_availability_columns(storage)
    assert [(columns.uuids[c], d, n) for c, d, n in zip(*_listed(columns), strict=True)] == [
        (uuid, day.toordinal(), count)
        for uuid, days in sorted(expected.items())
        for day, count in sorted(days.items())
    ]


def _listed(columns: availability.AvailabilityColumns) -> tuple[list[int], list[int], list[int]]:
    return columns.code.tolist(), columns.day.tolist(), columns.count.tolist()
