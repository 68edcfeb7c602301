"""Day or month files: the keys, the archive's recorded partition, the sink's month merge and
the check of month files before planning."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester import config
from harvester.archive import layout
from harvester.archive.integrity import damaged_days
from harvester.archive.layout import (
    ARCHIVE_KEY,
    Period,
    day_file_key,
    parse_day_key,
    parse_file_key,
    partition_file_key,
    period_of,
)
from harvester.archive.schemas import SchemaRegistry
from harvester.archive.settings import archive_partition, recorded_partition, settle_partition
from harvester.archive.sink import ParquetSink, WindowRows
from harvester.archive.storage import LocalStorage
from harvester.config import resolve_config
from harvester.errors import ConfigError, StorageError
from harvester.models import DayAvailability, Device, FinishedWindow
from harvester.records.parse import parse_window

SPOD = Device(uuid="a/b", type="SPOD", name="odd uuid")
FEB = dt.date(2024, 2, 1)


def test_month_keys_name_the_month_folder_and_file() -> None:
    """A month file is ``month=YYYY-MM/U_YYYY-MM.parquet``, the uuid encoded as for days."""
    assert partition_file_key("FMD", "1041", dt.date(2024, 2, 29), "month") == (
        "device_type=FMD/device_id=1041/month=2024-02/1041_2024-02.parquet"
    )
    assert partition_file_key("FMD", "a/b", dt.date(2024, 2, 5), "month") == (
        "device_type=FMD/device_id=a%2Fb/month=2024-02/a%2Fb_2024-02.parquet"
    )
    assert partition_file_key("FMD", "1041", dt.date(2024, 2, 5), "day") == day_file_key(
        "FMD", "1041", dt.date(2024, 2, 5)
    )
    with pytest.raises(ValueError, match="unknown partition"):
        period_of(FEB, "week")


@given(
    st.dates(max_value=dt.date(9998, 12, 31)),
    st.sampled_from(layout.PARTITIONS),
    st.text(min_size=1, max_size=20),
)
def test_every_key_parses_back_to_its_period(day: dt.date, partition: str, uuid: str) -> None:
    """Any day, partition and uuid: the key parses back to the type, raw uuid and the period
    that holds the day; the period's first and last days bracket it."""
    key = partition_file_key("RAMP", uuid, day, partition)
    parsed = parse_file_key(key)
    assert parsed == ("RAMP", uuid, period_of(day, partition))
    period = parsed[2]
    assert day in period
    assert period.first <= day <= period.last
    assert (period.last + dt.timedelta(days=1)) not in period
    assert (parse_day_key(key) is not None) == (partition == "day")


def test_periods_know_their_days_and_labels() -> None:
    """A month runs from its 1st to its last day (leap Februaries included); labels are the
    partition values."""
    assert Period("month", FEB).last == dt.date(2024, 2, 29)
    assert Period("month", dt.date(2023, 2, 1)).last == dt.date(2023, 2, 28)
    assert Period("month", dt.date(2023, 12, 1)).last == dt.date(2023, 12, 31)
    assert Period("month", FEB).label == "2024-02"
    assert Period("day", FEB).label == "2024-02-01"
    assert Period("day", FEB).last == FEB


@pytest.mark.parametrize(
    "key",
    [
        "device_type=FMD/device_id=1/month=2024-13/1_2024-13.parquet",
        "device_type=FMD/device_id=1/month=2024-2/1_2024-2.parquet",
        "device_type=FMD/device_id=1/month=2024-02-01/x.parquet",
        "device_type=FMD/device_id=1/week=2024-02/x.parquet",
        "device_type=FMD/device_id=1/month=2024-02/x.json",
        "_harvest/checkpoint/snapshot.ckpt",
    ],
)
def test_other_keys_are_not_data_files(key: str) -> None:
    """Keys of no partition, or with an impossible month, parse to None."""
    assert parse_file_key(key) is None


def test_config_and_layout_name_the_same_partitions() -> None:
    """config validates --partition against the names layout builds keys from."""
    assert config.PARTITIONS == layout.PARTITIONS


def test_partition_option_from_flag_environment_and_file() -> None:
    """--partition, SENSIT_PARTITION and the TOML key, in the usual precedence; unset is None
    (the archive's own); any other value is one line naming the source."""
    assert resolve_config({}, {}).partition is None
    assert resolve_config({}, {}, {"partition": "month"}).partition == "month"
    assert resolve_config({}, {"SENSIT_PARTITION": "Month"}, {"partition": "day"}).partition == (
        "month"
    )
    assert resolve_config({"partition": "day"}, {"SENSIT_PARTITION": "month"}).partition == "day"
    with pytest.raises(ConfigError, match=r"^--partition: expected one of day, month, got 'w'$"):
        resolve_config({"partition": "w"}, {})


# ------------------------------------------------------------------ the recorded partition


def test_a_new_archive_records_the_partition_asked_for(tmp_path: Path) -> None:
    """The first run records its partition (day unless asked); later runs keep it, with or
    without the option."""
    month, day = LocalStorage(tmp_path / "m"), LocalStorage(tmp_path / "d")
    assert settle_partition(month, "month") == "month"
    assert orjson.loads(month.read_bytes(ARCHIVE_KEY)) == {"partition": "month"}
    assert settle_partition(month, None) == "month"
    assert settle_partition(month, "month") == "month"
    assert settle_partition(day, None) == "day"
    assert recorded_partition(day) == "day"


def test_asking_for_the_other_partition_is_refused_untouched(tmp_path: Path) -> None:
    """A request for the other partition is a ConfigError of one line naming both, and
    nothing under OUT changes."""
    storage = LocalStorage(tmp_path)
    settle_partition(storage, "month")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as refused:
        settle_partition(storage, "day")
    message = str(refused.value)
    assert "\n" not in message
    assert "--partition day" in message
    assert "--partition month" in message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_archive_from_before_the_record_is_a_day_archive(tmp_path: Path) -> None:
    """An archive with state but no record is day: month is refused, day gets recorded."""
    storage = LocalStorage(tmp_path)
    storage.write_file("_harvest/runs/r.json", lambda h: h.write(b"{}"))
    assert archive_partition(storage) == "day"
    with pytest.raises(ConfigError, match="created with --partition day"):
        settle_partition(storage, "month")
    assert not storage.exists(ARCHIVE_KEY)
    assert settle_partition(storage, None) == "day"
    assert recorded_partition(storage) == "day"


def test_data_alone_makes_an_archive_and_a_lock_alone_does_not(tmp_path: Path) -> None:
    """Day files without _harvest/ are a day archive; a run's own lock is no archive; plan
    (record=False) writes nothing."""
    data = LocalStorage(tmp_path / "data")
    data.write_file(day_file_key("FMD", "1", FEB), lambda h: h.write(b"PAR1"))
    with pytest.raises(ConfigError):
        settle_partition(data, "month")
    locked = LocalStorage(tmp_path / "locked")
    lock = locked.acquire_lock(layout.LOCK_KEY, "me")
    try:
        assert settle_partition(locked, "month", record=False) == "month"
        assert not locked.exists(ARCHIVE_KEY)
        assert settle_partition(locked, "month") == "month"
    finally:
        lock.release()


@pytest.mark.parametrize("body", [b"{not json", b'{"partition": "week"}', b"[]"])
def test_an_unreadable_record_is_a_storage_error(tmp_path: Path, body: bytes) -> None:
    """A record that is not JSON, not an object or names no known partition stops with a
    StorageError (exit 2) that says what to write."""
    storage = LocalStorage(tmp_path)
    storage.write_file(ARCHIVE_KEY, lambda h: h.write(body))
    with pytest.raises(StorageError, match=r"_harvest/archive\.json"):
        settle_partition(storage, None)


# ------------------------------------------------------------------ the sink's month merge


def _window(
    day: dt.date, hour: int, minutes: list[int], fields: dict[str, object] | None = None
) -> WindowRows:
    """A 2-hour window of ``day`` from ``hour``, records at ``minutes`` past it (newest first,
    as the server sends them); the _id is derived from the time."""
    start = dt.datetime.combine(day, dt.time(hour), dt.UTC)
    records = []
    for minute in sorted(minutes, reverse=True):
        stamp = start + dt.timedelta(minutes=minute)
        records.append(
            {
                "_id": f"{int(stamp.timestamp()):024x}",
                "date": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "temp": 20.5,
                **(fields or {}),
            }
        )
    body = orjson.dumps({"data": records})
    return WindowRows(start, start + dt.timedelta(hours=2), parse_window(body))


def _month_sink(tmp_path: Path) -> tuple[LocalStorage, ParquetSink]:
    storage = LocalStorage(tmp_path)
    return storage, ParquetSink(storage, SchemaRegistry(storage), "month")


def _read(storage: LocalStorage, day: dt.date) -> pa.Table:
    key = partition_file_key(SPOD.type, SPOD.uuid, day, "month")
    return pq.read_table(pa.BufferReader(storage.read_bytes(key)))


def test_days_merge_into_their_month_file_sorted_and_once(tmp_path: Path) -> None:
    """Days written in any order land in one month file, sorted by date; a day written again
    with overlapping rows adds only its new ones; the next month gets its own file."""
    storage, sink = _month_sink(tmp_path)
    feb5, feb3 = dt.date(2024, 2, 5), dt.date(2024, 2, 3)
    first = sink.write_day(SPOD, feb5, [_window(feb5, 0, [5, 10])])
    assert list(first.rows_per_window.values()) == [2]
    assert first.rows_in_file == 2
    sink.write_day(SPOD, feb3, [_window(feb3, 22, [1, 119, 120])])
    again = sink.write_day(SPOD, feb5, [_window(feb5, 0, [10, 20]), _window(feb5, 2, [0])])
    assert again.rows_in_file == 6
    table = _read(storage, FEB)
    dates = table.column("date").to_pylist()
    assert dates == sorted(dates)
    assert table.num_rows == len(set(table.column("_id").to_pylist())) == 6
    assert {d.date() for d in dates} == {feb3, feb5}
    march = dt.date(2024, 3, 1)
    sink.write_day(SPOD, march, [_window(march, 0, [1])])
    assert _read(storage, march).num_rows == 1
    assert sorted(p.parent.name for p in tmp_path.rglob("*.parquet")) == [
        "month=2024-02",
        "month=2024-03",
    ]


def test_rows_outside_the_day_stay_out_of_its_merge(tmp_path: Path) -> None:
    """A window's rows beyond its day (the server's inclusive end) are not stored with it,
    even though the month file would hold that next day too."""
    storage, sink = _month_sink(tmp_path)
    feb5 = dt.date(2024, 2, 5)
    result = sink.write_day(SPOD, feb5, [_window(feb5, 22, [60, 120])])
    assert result.rows_in_file == 1
    assert _read(storage, FEB).column("date").to_pylist() == [
        dt.datetime(2024, 2, 5, 23, tzinfo=dt.UTC)
    ]


def test_days_of_one_month_written_at_once_lose_nothing(tmp_path: Path) -> None:
    """Many days of one month written by concurrent threads (as the pool's writers do): every
    day's rows are in the file, none twice."""
    storage, sink = _month_sink(tmp_path)
    days = [dt.date(2024, 2, n) for n in range(1, 29)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def write(share: list[dt.date]) -> None:
        barrier.wait()
        try:
            for day in share:
                sink.write_day(SPOD, day, [_window(day, 4, [0, 30, 60])])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(days[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    table = _read(storage, FEB)
    assert table.num_rows == len(set(table.column("_id").to_pylist())) == 3 * len(days)


def test_a_field_named_month_is_renamed_only_in_a_month_archive(tmp_path: Path) -> None:
    """A source field named like the archive's partition key is stored as ``<name>_src``; the
    other partition's name is an ordinary field."""
    storage, sink = _month_sink(tmp_path)
    feb5 = dt.date(2024, 2, 5)
    sink.write_day(SPOD, feb5, [_window(feb5, 0, [1], {"month": 2, "day": 5})])
    names = _read(storage, FEB).column_names
    assert "month_src" in names
    assert "month" not in names
    assert "day" in names


# ------------------------------------------------------------------ month files' integrity

JAN = [dt.date(2024, 1, d) for d in (30, 31)]


def _finished(day: dt.date, hour: int, records: int, minutes: int = 120) -> FinishedWindow:
    start = dt.datetime.combine(day, dt.time(hour), dt.UTC)
    return FinishedWindow(
        SPOD.uuid, SPOD.type, start, start + dt.timedelta(minutes=minutes), records, 9, True
    )


def _month_archive(tmp_path: Path) -> tuple[LocalStorage, Path]:
    """A month archive whose January file holds 3 rows on each of Jan 30 and Jan 31."""
    storage, sink = _month_sink(tmp_path)
    settle_partition(storage, "month")
    for day in JAN:
        sink.write_day(SPOD, day, [_window(day, 0, [1, 2, 3])])
    return storage, tmp_path / partition_file_key(SPOD.type, SPOD.uuid, JAN[0], "month")


def _days() -> dict[Device, list[DayAvailability]]:
    return {
        SPOD: [DayAvailability(day, 3, dt.datetime.combine(day, dt.time(1), dt.UTC)) for day in JAN]
    }


def test_a_whole_month_file_with_the_vouched_rows_passes(tmp_path: Path) -> None:
    """Every vouched row present: nothing damaged, whatever the range; clipped pieces of a
    slot overlapping its whole window are not counted twice."""
    storage, _ = _month_archive(tmp_path)
    windows = {day: [_finished(day, 0, 3), _finished(day, 0, 1, minutes=30)] for day in JAN}
    assert damaged_days(storage, _days(), lambda _u, d: windows[d], None, None) == set()
    late = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
    assert damaged_days(storage, _days(), lambda _u, d: windows[d], late, None) == set()


def test_a_cut_month_file_damages_every_in_range_day_of_it(tmp_path: Path) -> None:
    """A truncated month file: each day of the month in range is fetched again (warned)."""
    storage, path = _month_archive(tmp_path)
    path.write_bytes(path.read_bytes()[:-9])
    windows = {day: [_finished(day, 0, 3)] for day in JAN}
    assert damaged_days(storage, _days(), lambda _u, d: windows[d], None, None) == {
        (SPOD.uuid, day) for day in JAN
    }
    late = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
    assert damaged_days(storage, _days(), lambda _u, d: windows[d], late, None) == {
        (SPOD.uuid, JAN[1])
    }


def test_a_month_file_short_of_vouched_rows_is_damaged(tmp_path: Path) -> None:
    """A whole file that lacks rows the checkpoint vouches for (a day outside the range of
    the run that repaired it) is damaged too: its in-range days are fetched again."""
    storage, path = _month_archive(tmp_path)
    table = pq.read_table(path)
    pq.write_table(table.slice(3), path)
    windows = {day: [_finished(day, 0, 3)] for day in JAN}
    early = dt.datetime(2024, 1, 31, tzinfo=dt.UTC)
    assert damaged_days(storage, _days(), lambda _u, d: windows[d], None, early) == {
        (SPOD.uuid, JAN[0])
    }
