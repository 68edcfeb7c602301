"""Tests of harvester.archive.sink: device-day Parquet files, the schema registry, align_files
(more of both in tests/test_widening.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from harvester.archive.layout import day_file_key, is_temporary
from harvester.archive.sink import (
    DayWriteResult,
    ParquetSink,
    SchemaRegistry,
    WindowRows,
    _distinct,
)
from harvester.archive.storage import LocalStorage
from harvester.models import Device
from harvester.records.parse import parse_window
from harvester.records.schema import TIMESTAMP

DAY = dt.date(2024, 2, 5)
MIDNIGHT = dt.datetime(2024, 2, 5, tzinfo=dt.UTC)
SPOD = Device(uuid="1041", type="SPOD", name="METEC 1041")
KEY = day_file_key("SPOD", "1041", DAY)


def _at(seconds: float) -> dt.datetime:
    return MIDNIGHT + dt.timedelta(seconds=seconds)


def _record(seconds: float, **fields: object) -> dict[str, object]:
    """A SPOD record `seconds` after midnight; its _id is derived from its time."""
    stamp = _at(seconds)
    return {
        "_id": f"{int(seconds * 1000) % 2**96:024x}",
        "id": "1041",
        "date": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
        "temp": 20.5,
        **fields,
    }


def _window(start_h: float, end_h: float, seconds: list[float], **fields: object) -> WindowRows:
    """A window as the server answers it: newest first, whatever records it chose to include."""
    records = [_record(s, **fields) for s in sorted(seconds, reverse=True)]
    body = orjson.dumps({"data": records})
    return WindowRows(_at(start_h * 3600), _at(end_h * 3600), parse_window(body))


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path)


@pytest.fixture
def sink(storage: LocalStorage) -> ParquetSink:
    return ParquetSink(storage, SchemaRegistry(storage))


def _read(storage: LocalStorage, key: str = KEY) -> pa.Table:
    return pq.read_table(pa.BufferReader(storage.read_bytes(key)))


def test_day_file_key_is_hive_partitioned_and_deterministic() -> None:
    """The key names type, device and UTC day as hive partitions, and the file after them."""
    assert day_file_key("SPOD", "1041", DAY) == (
        "device_type=SPOD/device_id=1041/day=2024-02-05/1041_2024-02-05.parquet"
    )


def test_boundary_record_in_two_windows_is_stored_once(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """The server's inclusive bounds return 02:00:00 twice; it is stored once, in window 2."""
    first = _window(0, 2, [0, 3600, 7200])
    second = _window(2, 4, [7200, 7201, 14400])
    result = sink.write_day(SPOD, DAY, [first, second])
    table = _read(storage)
    assert table.column("date").to_pylist() == [_at(s) for s in (0, 3600, 7200, 7201)]
    assert result.rows_in_file == 4
    assert result.rows_per_window == {(first.start, first.end): 2, (second.start, second.end): 2}
    assert result.bytes_written == len(storage.read_bytes(KEY))
    assert not result.existing_file_unreadable


def test_rows_outside_their_window_are_dropped(sink: ParquetSink, storage: LocalStorage) -> None:
    """Rows before start, at or after end, or on another day never reach the file."""
    window = _window(2, 4, [-5, 7199.999, 7200, 10000, 14399.999, 14400, 90000])
    result = sink.write_day(SPOD, DAY, [window])
    assert _read(storage).column("date").to_pylist() == [_at(s) for s in (7200, 10000, 14399.999)]
    assert result.rows_per_window == {(window.start, window.end): 3}


def test_day_written_in_two_calls_is_merged_into_one_file(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """A second write_day for the same day unions with the first: one file, all rows."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [10, 20])])
    result = sink.write_day(SPOD, DAY, [_window(22, 24, [80000, 80001])])
    assert result.rows_in_file == 4
    assert _read(storage).column("date").to_pylist() == [_at(s) for s in (10, 20, 80000, 80001)]
    assert [k for k in storage.list_files() if k.endswith(".parquet")] == [KEY]


def test_rewriting_a_window_replaces_rows_and_the_newest_fetch_wins(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """Fetching a window again adds no duplicate; a changed record takes its newest values."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [10, 20], temp=1.0)])
    result = sink.write_day(SPOD, DAY, [_window(0, 2, [10, 20, 30], temp=2.0)])
    table = _read(storage)
    assert result.rows_in_file == 3
    assert table.column("_id").to_pylist() == [_record(s)["_id"] for s in (10, 20, 30)]
    assert table.column("temp").to_pylist() == [2.0, 2.0, 2.0]


def test_later_window_in_one_call_wins_over_earlier(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """Within one call, a record repeated in a later window keeps the later copy."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [10], temp=1.0), _window(0, 2, [10], temp=3.0)])
    assert _read(storage).column("temp").to_pylist() == [3.0]


def test_file_is_sorted_by_date_then_id_with_utc_millisecond_dates(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """Rows are ordered by date then _id, and date is stored as timestamp[ms, UTC]."""
    same_time = [
        {"_id": "b" * 24, "id": "1041", "date": "2024-02-05T00:00:05.000Z"},
        {"_id": "a" * 24, "id": "1041", "date": "2024-02-05T00:00:05.000Z"},
        {"_id": "c" * 24, "id": "1041", "date": "2024-02-05T00:00:01.000Z"},
    ]
    early = WindowRows(_at(0), _at(7200), parse_window(orjson.dumps({"data": same_time})))
    sink.write_day(SPOD, DAY, [_window(0, 2, [7000, 3, 500]), early])
    table = _read(storage)
    assert table.schema.field("date").type == TIMESTAMP
    keys = list(zip(table.column("date").to_pylist(), table.column("_id").to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert [i for _, i in keys[:4]] == ["c" * 24, _record(3)["_id"], "a" * 24, "b" * 24]
    assert (
        pq.ParquetFile(pa.BufferReader(storage.read_bytes(KEY)))
        .metadata.row_group(0)
        .column(0)
        .compression
        == "ZSTD"
    )


def test_truncated_existing_file_is_reported_and_replaced(
    sink: ParquetSink, storage: LocalStorage, tmp_path: Path
) -> None:
    """A corrupt day file is logged as unreadable, flagged, and replaced by a readable one."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [10, 20])])
    path = tmp_path / KEY
    path.write_bytes(path.read_bytes()[:100])
    with capture_logs() as logs:
        result = sink.write_day(SPOD, DAY, [_window(2, 4, [7300])])
    assert result.existing_file_unreadable
    assert any(e["event"] == "day_file_unreadable" and e["log_level"] == "warning" for e in logs)
    assert _read(storage).column("date").to_pylist() == [_at(7300)]


def test_unreadable_file_without_new_rows_is_removed(
    sink: ParquetSink, storage: LocalStorage, tmp_path: Path
) -> None:
    """A corrupt day file is not left for readers to trip on when no rows replace it."""
    (tmp_path / KEY).parent.mkdir(parents=True)
    (tmp_path / KEY).write_bytes(b"PAR1 not really")
    result = sink.write_day(SPOD, DAY, [_window(0, 2, [])])
    assert result == DayWriteResult({(_at(0), _at(7200)): 0}, 0, 0, True)
    assert not storage.exists(KEY)


def test_empty_windows_write_nothing(sink: ParquetSink, storage: LocalStorage) -> None:
    """Windows without records leave the existing file untouched and create none."""
    assert sink.write_day(SPOD, DAY, [_window(0, 2, [])]).bytes_written == 0
    assert not storage.exists(KEY)
    sink.write_day(SPOD, DAY, [_window(0, 2, [10])])
    before = storage.read_bytes(KEY)
    result = sink.write_day(SPOD, DAY, [_window(2, 4, [])])
    assert (result.rows_in_file, result.bytes_written) == (1, 0)
    assert storage.read_bytes(KEY) == before


def test_no_temporary_files_are_left_behind(sink: ParquetSink, storage: LocalStorage) -> None:
    """After many writes and rewrites only final files exist (no .tmp- leftovers)."""
    for hour in range(0, 24, 2):
        sink.write_day(SPOD, DAY, [_window(hour, hour + 2, [hour * 3600 + 1], extra=hour)])
    files = storage.list_files()
    assert files
    assert not [key for key in files if is_temporary(key)]


def test_partition_keys_are_not_columns_and_clashing_fields_are_renamed(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """Source fields named like partition keys are stored as <name>_src; keys are not columns."""
    with capture_logs() as logs:
        sink.write_day(SPOD, DAY, [_window(0, 2, [10], device_id="X", day=3)])
    table = _read(storage)
    assert "device_id" not in table.column_names
    assert "day" not in table.column_names
    assert table.column("device_id_src").to_pylist() == ["X"]
    assert table.column("day_src").to_pylist() == [3]
    assert {e.get("field") for e in logs if e["event"] == "partition_key_field_renamed"} == {
        "device_id",
        "day",
    }


def test_types_are_unified_across_windows_and_calls(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """int then float becomes float; a string beside numbers becomes text; nothing crashes."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [1], v=1, w=1)])
    sink.write_day(SPOD, DAY, [_window(2, 4, [7201], v=1.5, w="n/a")])
    table = _read(storage)
    assert table.schema.field("v").type == pa.float64()
    assert table.column("v").to_pylist() == [1.0, 1.5]
    assert table.column("w").to_pylist() == ["1", "n/a"]


def test_schema_registry_persists_and_reloads(sink: ParquetSink, storage: LocalStorage) -> None:
    """The unified schema is saved under _harvest/schema/ and a fresh registry loads it."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [1], v=1)])
    sink.write_day(SPOD, DAY, [_window(2, 4, [7201], late=True)])
    assert storage.exists("_harvest/schema/SPOD.arrow")
    reloaded = SchemaRegistry(storage)
    assert reloaded.schema("SPOD").names == ["_id", "id", "date", "temp", "v", "late"]
    # Every type the archive holds is checked at a run's end: a shard may have widened it.
    assert reloaded.widened == frozenset({"SPOD"})
    assert reloaded.schema("RAMP") == pa.schema([])


def _fleet_with_a_late_field(sink: ParquetSink) -> None:
    """Three SPOD devices over three days (two rows each); a field appears on the last day."""
    devices = [Device(uuid=str(1040 + i), type="SPOD", name=f"METEC {1040 + i}") for i in range(3)]
    for offset in range(3):
        extra = {"co2_ppm": 400 + offset} if offset == 2 else {}
        seconds = [offset * 86400 + 5.0, offset * 86400 + 6.0]
        for device in devices:
            window = _window(offset * 24, offset * 24 + 2, seconds, **extra)
            sink.write_day(device, DAY + dt.timedelta(days=offset), [window])


def test_align_files_rewrites_the_head_alone_and_readers_see_every_field(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """After a late field appears, align_files rewrites only the folder's first file, whose
    schema pandas and pyarrow.dataset take for the folder: they then read every field and
    every row of it, casting the other files. DuckDB reads it by name (union_by_name)."""
    registry = SchemaRegistry(storage)
    sink = ParquetSink(storage, registry)
    _fleet_with_a_late_field(sink)
    before = {key: storage.read_bytes(key) for key in storage.list_files("device_type=SPOD/")}
    assert sink.align_files("SPOD") == 1
    assert sink.align_files("SPOD") == 0
    changed = [key for key, body in before.items() if storage.read_bytes(key) != body]
    assert changed == [min(before)]
    folder = tmp_path / "device_type=SPOD"

    frame = pd.read_parquet(folder)
    assert len(frame) == 18
    assert frame["co2_ppm"].notna().sum() == 6

    dataset = pds.dataset(folder, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert "co2_ppm" in table.column_names
    assert table.num_rows == 18
    assert table.schema.field("date").type == TIMESTAMP

    glob = f"{tmp_path}/**/*.parquet"
    rows = duckdb.sql(
        f"SELECT count(*), count(co2_ppm), count(DISTINCT device_id), count(DISTINCT day) "
        f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    ).fetchall()
    assert rows == [(18, 6, 3, 3)]


def test_a_shard_aligns_only_its_own_devices_files(storage: LocalStorage) -> None:
    """Concurrent shards share one archive: a shard rewrites no file of another shard's device
    (that shard may be writing it at that moment, and a rewrite from an older read would lose
    its rows), so the head waits for its own shard, whose next alignment rewrites it."""
    registry = SchemaRegistry(storage)
    sink = ParquetSink(storage, registry)
    _fleet_with_a_late_field(sink)
    before = {key: storage.read_bytes(key) for key in storage.list_files("device_type=SPOD/")}
    assert sink.align_files("SPOD", owns=lambda uuid: uuid != "1040") == 0
    assert all(storage.read_bytes(key) == body for key, body in before.items())
    assert sink.align_files("SPOD", owns=lambda uuid: uuid == "1040") == 1
    changed = [key for key, body in before.items() if storage.read_bytes(key) != body]
    assert changed == [min(before)]
    assert "device_id=1040/" in changed[0]


def test_align_files_rebuilds_a_lost_registry_from_the_files(
    storage: LocalStorage, sink: ParquetSink
) -> None:
    """With the type's schema files deleted, align_files widens a fresh registry from the data
    files' footers, and puts the head on it."""
    _fleet_with_a_late_field(sink)
    for key in storage.list_files("_harvest/schema/"):
        if "SPOD" in key:
            storage.delete(key)
    fresh = ParquetSink(storage, SchemaRegistry(storage))
    assert fresh.align_files("SPOD") == 1
    assert "co2_ppm" in SchemaRegistry(storage).schema("SPOD").names


def test_a_mixed_day_file_keeps_the_union_of_fields(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """A field seen only in the file's older rows survives a merge with rows without it."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [10], only_old=7)])
    sink.write_day(SPOD, DAY, [_window(2, 4, [7210])])
    assert _read(storage).column("only_old").to_pylist() == [7, None]


def test_rows_per_window_counts_distinct_records(sink: ParquetSink) -> None:
    """A record repeated inside one window's answer counts once for that window."""
    records = [_record(10), _record(10), _record(20)]
    window = WindowRows(_at(0), _at(7200), parse_window(orjson.dumps({"data": records})))
    result = sink.write_day(SPOD, DAY, [window])
    assert result.rows_per_window == {(_at(0), _at(7200)): 2}
    assert result.rows_in_file == 2


@given(st.lists(st.integers(0, 6), max_size=12))
def test_distinct_counts_codes_in_any_order(codes: list[int]) -> None:
    """The sort-free count of distinct codes agrees with np.unique on any codes, increasing
    (the usual window of new records) or not (repeats, records already in the file)."""
    array = np.asarray(codes, dtype=np.int32)
    assert _distinct(array) == np.unique(array).size


def test_key_columns_are_written_without_a_dictionary(
    sink: ParquetSink, storage: LocalStorage
) -> None:
    """``_id`` and ``date`` are new in nearly every row, so they skip dictionary encoding;
    the measurements keep Parquet's default, a dictionary where values repeat."""
    sink.write_day(SPOD, DAY, [_window(0, 2, [0, 1, 2, 3])])
    meta = pq.ParquetFile(pa.BufferReader(storage.read_bytes(KEY))).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)
    }
    assert not any("DICTIONARY" in e for e in encodings["_id"] + encodings["date"])
    assert any("DICTIONARY" in e for e in encodings["id"])
