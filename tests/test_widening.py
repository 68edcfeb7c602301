"""A type's schema widening costs the same in an archive of any size, on any storage, shards
included: the registry records it without reading the data files, and readers see every field
because the head file (the first in path order, whose schema they take) is rewritten alone."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from harvester.archive import readers
from harvester.archive.layout import day_file_key
from harvester.archive.objectstore import ObjectStorage, open_location
from harvester.archive.schemas import SchemaRegistry, readers_cast
from harvester.archive.sink import ParquetSink, WindowRows
from harvester.archive.storage import LocalStorage, Storage, StorageLock
from harvester.models import Device
from harvester.records.parse import parse_window
from tests.support.s3server import TEST_ENV, moto_server, new_bucket

DAY = dt.date(2024, 2, 5)
NEXT = DAY + dt.timedelta(days=1)


class CountingStorage:
    """A storage seam that counts what passes through it, by kind of key."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()
        self.rewritten: list[str] = []

    @staticmethod
    def _kind(key: str) -> str:
        return "data" if key.startswith("device_type=") else "harvest"

    def describe(self) -> str:
        return self.inner.describe()

    def write_file(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        self.counts[f"{self._kind(key)}_writes"] += 1
        if self._kind(key) == "data":
            self.rewritten.append(key)
        self.inner.write_file(key, write)

    def read_bytes(self, key: str) -> bytes:
        payload = self.inner.read_bytes(key)
        self.counts[f"{self._kind(key)}_bytes_read"] += len(payload)
        return payload

    def open_input(self, key: str) -> BinaryIO:
        self.counts[f"{self._kind(key)}_opens"] += 1
        return self.inner.open_input(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list_files(self, prefix: str = "") -> list[str]:
        keys = self.inner.list_files(prefix)
        self.counts[f"{self._kind(prefix)}_keys_listed"] += len(keys)
        return keys

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def acquire_lock(self, key: str, owner: str) -> StorageLock:
        return self.inner.acquire_lock(key, owner)


def _device(n: int) -> Device:
    return Device(uuid=f"{n:04d}", type="SPOD", name=f"pod {n}")


def _window(day: dt.date, **fields: object) -> WindowRows:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    records = [
        {"_id": f"{day:%Y%m%d}{s:04d}", "date": f"{day}T00:00:{s:02d}.000Z", "v": s, **fields}
        for s in range(3)
    ]
    return WindowRows(
        start, start + dt.timedelta(hours=2), parse_window(orjson.dumps({"data": records}))
    )


def _archive(storage: Storage, files: int) -> None:
    """``files`` day files of SPOD (one per device, written newest device first), aligned."""
    sink = ParquetSink(storage, SchemaRegistry(storage))
    for n in reversed(range(files)):
        sink.write_day(_device(n), DAY, [_window(DAY)])
    sink.align_files("SPOD")


def _widening(storage: Storage) -> CountingStorage:
    """A new day of a middle device brings a new field and an int turned fractional; the run
    then aligns, as it does at its end. Returns what went through the storage seam."""
    counting = CountingStorage(storage)
    sink = ParquetSink(counting, SchemaRegistry(counting))
    sink.write_day(_device(3), NEXT, [_window(NEXT, co2=1.5, v=0.5)])
    sink.align_files("SPOD")
    return counting


@pytest.mark.parametrize(("small", "large"), [(8, 80)])
def test_a_widening_costs_the_same_whatever_the_archive_holds(
    tmp_path: Path, small: int, large: int
) -> None:
    """Data files written, opened, read and listed on a widening are the same in an archive of
    8 files and of 80: the new day and the head file, nothing else (the code before this
    rewrote all 80, reading each whole)."""
    measured = {}
    for files in (small, large):
        storage = LocalStorage(tmp_path / str(files))
        _archive(storage, files)
        counting = _widening(storage)
        measured[files] = counting
        assert counting.rewritten == [
            day_file_key("SPOD", "0003", NEXT),
            day_file_key("SPOD", "0000", DAY),
        ]
        assert counting.counts["data_keys_listed"] == 0
    data = {
        n: {k: v for k, v in m.counts.items() if k.startswith("data")} for n, m in measured.items()
    }
    assert data[small] == data[large]
    assert (
        measured[small].counts["harvest_bytes_read"] == measured[large].counts["harvest_bytes_read"]
    )


def test_after_a_widening_default_readers_see_every_field_and_row(tmp_path: Path) -> None:
    """pandas and pyarrow.dataset on the type's folder, as they are, see the new field and
    the fractional values; so do Polars (missing columns inserted) and DuckDB."""
    _archive(LocalStorage(tmp_path), 12)
    _widening(LocalStorage(tmp_path))
    folder = tmp_path / "device_type=SPOD"
    frame = pd.read_parquet(folder)
    assert len(frame) == 13 * 3
    assert frame["co2"].notna().sum() == 3
    assert frame["v"].dtype == "float64"
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    assert {"co2", "v"} <= set(table.column_names)
    assert table.num_rows == 39
    fields = pl.from_arrow(readers.record_schema(tmp_path, "SPOD").empty_table())
    assert isinstance(fields, pl.DataFrame)
    scanned = pl.scan_parquet(
        folder / "**" / "*.parquet",
        hive_partitioning=True,
        schema=fields.schema,
        missing_columns="insert",
        cast_options=pl.ScanCastOptions(integer_cast="allow-float"),
    ).collect()
    assert scanned.height == 39
    assert scanned["co2"].count() == 3


def test_concurrent_writers_keep_every_field(tmp_path: Path) -> None:
    """Two shards that loaded the registry before either widened each add a field: neither
    overwrites the other's, in the registry or in the published <TYPE>.arrow and ALL.arrow."""
    storage = LocalStorage(tmp_path)
    base = pa.schema([("_id", pa.string())])
    SchemaRegistry(storage).widen("SPOD", base)
    first, second = SchemaRegistry(storage), SchemaRegistry(storage)
    first.widen("SPOD", base.append(pa.field("a", pa.int64())))
    second.widen("SPOD", base.append(pa.field("b", pa.float64())))
    assert {"a", "b"} <= set(SchemaRegistry(storage).schema("SPOD").names)
    for name in ("SPOD", "ALL"):
        published = pa.ipc.read_schema(tmp_path / f"_harvest/schema/{name}.arrow")
        assert {"a", "b"} <= set(published.names), name
    assert {"a", "b"} <= set(readers.record_schema(tmp_path, "SPOD").names)


def test_many_threads_widening_at_once_keep_every_field(tmp_path: Path) -> None:
    """Eight registries (as eight shard processes would) each add fields at the same time:
    every field is recorded, and published once a run's end refreshes the registry."""
    storage = LocalStorage(tmp_path)
    registries = [SchemaRegistry(storage) for _ in range(8)]
    start = threading.Barrier(len(registries))

    def widen(index: int) -> None:
        start.wait()
        for step in range(5):
            registries[index].widen("SPOD", pa.schema([(f"f{index}_{step}", pa.int64())]))

    threads = [threading.Thread(target=widen, args=(i,)) for i in range(len(registries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {f"f{i}_{s}" for i in range(8) for s in range(5)}
    assert expected <= set(SchemaRegistry(storage).schema("SPOD").names)
    assert expected <= set(readers.record_schema(tmp_path, "SPOD").names)
    # A publication can lose to a concurrent one; the end-of-run refresh publishes again.
    registries[0].refresh()
    for name in ("SPOD", "ALL"):
        published = pa.ipc.read_schema(tmp_path / f"_harvest/schema/{name}.arrow")
        assert expected <= set(published.names), name


def test_a_shard_leaves_another_shards_head_to_it(tmp_path: Path) -> None:
    """The head belongs to one shard's device: another shard rewrites nothing (the owner may be
    writing it), and the owner's next alignment rewrites it alone."""
    storage = LocalStorage(tmp_path)
    _archive(storage, 6)
    before = {key: storage.read_bytes(key) for key in storage.list_files("device_type=SPOD/")}
    sink = ParquetSink(storage, SchemaRegistry(storage))
    sink.write_day(_device(3), NEXT, [_window(NEXT, co2=1.5)])
    assert sink.align_files("SPOD", owns=lambda uuid: uuid != "0000") == 0
    assert all(storage.read_bytes(key) == body for key, body in before.items())
    owner = ParquetSink(storage, SchemaRegistry(storage))
    assert owner.align_files("SPOD", owns=lambda uuid: uuid == "0000") == 1
    changed = [key for key, body in before.items() if storage.read_bytes(key) != body]
    assert changed == [day_file_key("SPOD", "0000", DAY)]
    assert "co2" in pq.read_schema(tmp_path / changed[0]).names


def test_a_new_first_file_becomes_the_head_without_a_listing(tmp_path: Path) -> None:
    """A device whose files sort before every other's is recorded as the head when written,
    so the next widening aligns it without listing the folder."""
    storage = LocalStorage(tmp_path)
    sink = ParquetSink(storage, SchemaRegistry(storage))
    for n in (5, 6):
        sink.write_day(_device(n), DAY, [_window(DAY)])
    sink.align_files("SPOD")
    sink.write_day(_device(1), DAY, [_window(DAY)])
    counting = CountingStorage(storage)
    later = ParquetSink(counting, SchemaRegistry(counting))
    later.write_day(_device(6), NEXT, [_window(NEXT, co2=2.0)])
    assert later.align_files("SPOD") == 1
    assert counting.rewritten[-1] == day_file_key("SPOD", "0001", DAY)
    assert counting.counts["data_keys_listed"] == 0


def test_a_deleted_head_is_found_again_by_listing(tmp_path: Path) -> None:
    """When the recorded head is gone (deleted by hand, or as unreadable), the folder is listed
    once and the new first file aligned."""
    storage = LocalStorage(tmp_path)
    _archive(storage, 4)
    storage.delete(day_file_key("SPOD", "0000", DAY))
    sink = ParquetSink(storage, SchemaRegistry(storage))
    sink.write_day(_device(3), NEXT, [_window(NEXT, co2=1.5)])
    assert sink.align_files("SPOD") == 1
    assert "co2" in pq.read_schema(tmp_path / day_file_key("SPOD", "0001", DAY)).names
    assert SchemaRegistry(storage).head("SPOD") == day_file_key("SPOD", "0001", DAY)


def test_an_archive_of_an_older_version_is_listed_once(tmp_path: Path) -> None:
    """Only <TYPE>.arrow, no recorded head (as the previous version left archives): the first
    alignment lists the folder for the head, the next ones do not."""
    storage = LocalStorage(tmp_path)
    _archive(storage, 4)
    for key in storage.list_files("_harvest/schema/"):
        if ".part-" in key:
            storage.delete(key)
    counting = CountingStorage(storage)
    assert "v" in SchemaRegistry(counting).schema("SPOD").names
    ParquetSink(counting, SchemaRegistry(counting)).align_files("SPOD")
    assert counting.counts["data_keys_listed"] == 4
    again = CountingStorage(storage)
    ParquetSink(again, SchemaRegistry(again)).align_files("SPOD")
    assert again.counts["data_keys_listed"] == 0


def test_sources_are_folded_when_they_pile_up(tmp_path: Path) -> None:
    """Each widening adds a source; an alignment folds many into one, keeping every field."""
    storage = LocalStorage(tmp_path)
    _archive(storage, 2)
    registry = SchemaRegistry(storage)
    for step in range(20):
        registry.widen("SPOD", pa.schema([(f"f{step}", pa.int64())]))
    ParquetSink(storage, registry).align_files("SPOD")
    sources = [k for k in storage.list_files("_harvest/schema/") if ".part-" in k]
    assert len(sources) <= 2
    assert {f"f{s}" for s in range(20)} <= set(SchemaRegistry(storage).schema("SPOD").names)


def test_a_field_turning_to_text_rewrites_the_files_readers_cannot_cast(tmp_path: Path) -> None:
    """Readers cannot cast a number to text (Polars) or a nested value to text (any of them):
    such a widening marks the type, and its alignment rewrites every file of the old type,
    then drops the mark. Polars then reads the folder."""
    storage = LocalStorage(tmp_path)
    _archive(storage, 3)
    sink = ParquetSink(storage, SchemaRegistry(storage))
    sink.write_day(_device(1), NEXT, [_window(NEXT, v="n/a")])
    assert storage.exists("_harvest/schema/SPOD.unaligned")
    assert sink.align_files("SPOD") == 3
    assert not storage.exists("_harvest/schema/SPOD.unaligned")
    scanned = pl.scan_parquet(
        tmp_path / "device_type=SPOD" / "**" / "*.parquet",
        hive_partitioning=True,
        missing_columns="insert",
    ).collect()
    assert scanned["v"].dtype == pl.String
    assert scanned.height == 12


@pytest.mark.parametrize(
    ("old", "new", "cast"),
    [
        (pa.int64(), pa.float64(), True),
        (pa.null(), pa.string(), True),
        (pa.struct([("a", pa.int64())]), pa.struct([("a", pa.float64())]), True),
        (pa.list_(pa.int64()), pa.list_(pa.float64()), True),
        (pa.int64(), pa.string(), False),
        (pa.float64(), pa.string(), False),
        (pa.struct([("a", pa.int64())]), pa.string(), False),
        (pa.struct([("a", pa.int64())]), pa.struct([("a", pa.int64()), ("b", pa.int64())]), False),
    ],
)
def test_readers_cast(old: pa.DataType, new: pa.DataType, cast: bool) -> None:
    """Nulls and integers widen without rewriting; text from any other kind, and structs that
    gain fields, need the files rewritten."""
    assert readers_cast(pa.schema([("x", old)]), pa.schema([("x", new), ("y", pa.int8())])) is cast


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_a_widening_on_object_storage_reads_footers_not_files(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 (moto) the widening is the same: the head's footer and body, the new day, no
    listing of the data; the readers' helper then sees the new field."""
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    bucket = new_bucket(endpoint)
    storage = open_location(f"s3://{bucket}/arch", endpoint)
    assert isinstance(storage, ObjectStorage)
    _archive(storage, 5)
    counting = _widening(storage)
    assert counting.rewritten == [
        day_file_key("SPOD", "0003", NEXT),
        day_file_key("SPOD", "0000", DAY),
    ]
    assert counting.counts["data_keys_listed"] == 0
    host = endpoint.removeprefix("http://")
    uri = f"s3://{bucket}/arch?endpoint_override={host}&scheme=http"
    table = readers.dataset(uri, "SPOD").to_table()
    assert "co2" in table.column_names
    assert table.num_rows == 6 * 3
