"""Storage keys: server text encoded Hive-style, every key proven to stay under the root."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import orjson
import pyarrow.dataset as pds
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from harvester.archive import readers
from harvester.archive.layout import (
    MAX_VALUE_BYTES,
    checked_key,
    checked_prefix,
    day_file_key,
    decode_value,
    device_prefix,
    encode_value,
    is_temporary,
    key_kind,
    parse_day_key,
    parse_device_prefix,
    unusable_uuid,
)
from harvester.archive.schemas import SchemaRegistry
from harvester.archive.sink import ParquetSink, WindowRows
from harvester.archive.storage import LocalStorage
from harvester.errors import StorageError
from harvester.inspect.report import stored_rows
from harvester.inspect.verify import data_files
from harvester.models import Device
from harvester.records.parse import parse_window

DAY = dt.date(2024, 2, 5)
MIDNIGHT = dt.datetime(2024, 2, 5, tzinfo=dt.UTC)
HOSTILE = [
    "../../../../../escape",
    "a/b",
    "/etc/passwd",
    "C:\\Windows\\x",
    "..",
    ".",
    ".hidden",
    "_meta",
    ".tmp-x",
    "k=v",
    "100%",
    "%2F",
    "nul\x00byte",
    "tab\tnew\nline",
    "space here",
    "Zürich-µ",
    "東京",
    "emoji😀",
    "a:b*c?d[e]{f}",
]


@given(st.text(max_size=40))
@example("1041")
@example("%41")
def test_encoding_round_trips_and_is_a_single_safe_segment(text: str) -> None:
    """Any text decodes back to itself, and its encoding is one ASCII path segment that is
    neither '.' nor '..' nor hidden, of safe characters and %XX escapes only."""
    encoded = encode_value(text)
    assert decode_value(encoded) == text
    assert encoded.isascii()
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%")
    assert not encoded.startswith((".", "_"))


def test_plain_uuids_keep_the_keys_they_always_had() -> None:
    """Uuids of safe characters are unchanged, so archives written before encoding still match."""
    for uuid in ("1041", "0041", "abc-DEF_1.2", "a.b"):
        assert encode_value(uuid) == uuid
    assert day_file_key("SPOD", "1041", DAY) == (
        "device_type=SPOD/device_id=1041/day=2024-02-05/1041_2024-02-05.parquet"
    )


def test_encoding_is_hive_style_uppercase_utf8() -> None:
    """Each unsafe character is its UTF-8 bytes as uppercase %XX; dots and underscores are
    escaped only where they would make a special or hidden name."""
    assert encode_value("a/b") == "a%2Fb"
    assert encode_value("k=v%") == "k%3Dv%25"
    assert encode_value("ü") == "%C3%BC"
    assert encode_value("..") == "%2E."
    assert encode_value(".") == "%2E"
    assert encode_value("_x_") == "%5Fx_"
    assert encode_value("a..b") == "a..b"


@pytest.mark.parametrize("uuid", HOSTILE)
def test_a_hostile_uuid_makes_a_checked_four_segment_key(uuid: str) -> None:
    """Whatever the uuid, its day file key passes the check and parses back to the raw uuid."""
    key = day_file_key("FMD", uuid, DAY)
    assert checked_key(key) == key
    assert len(key.split("/")) == 4
    assert not is_temporary(key)
    assert parse_day_key(key) == ("FMD", uuid, DAY)
    assert parse_device_prefix(device_prefix("FMD", uuid)) == ("FMD", uuid)


@pytest.mark.parametrize(
    "folder",
    ["device_type=FMD/", "device_type=FMD/x=1/", "a/device_id=1/", "device_type=/device_id=1/"],
)
def test_parse_device_prefix_refuses_other_folders(folder: str) -> None:
    """Only a ``device_type=T/device_id=U/`` folder with both values names a device."""
    assert parse_device_prefix(folder) is None


def test_unusable_uuids_are_named_with_their_reason() -> None:
    """An empty uuid and one too long once encoded are refused; the longest allowed passes."""
    assert unusable_uuid("") == "empty uuid"
    assert unusable_uuid("x" * MAX_VALUE_BYTES) is None
    assert "over the limit" in (unusable_uuid("x" * (MAX_VALUE_BYTES + 1)) or "")
    # Three bytes of UTF-8, nine characters once encoded.
    assert "over the limit" in (unusable_uuid("€" * 23) or "")
    assert unusable_uuid("../../x") is None


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "empty"),
        ("../escape", "'..' segment"),
        ("a/../../escape", "'..' segment"),
        ("a/./b", "'.' segment"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty segment"),
        ("a/b/", "empty segment"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a/" + "x" * 256, "longer than 255"),
    ],
)
def test_checked_key_refuses_keys_that_could_leave_the_root(key: str, problem: str) -> None:
    """Traversal, absolute, empty-segment, backslash, NUL and over-long keys are StorageErrors."""
    with pytest.raises(StorageError, match=problem):
        checked_key(key)


def test_checked_prefix_allows_a_trailing_slash_and_the_root() -> None:
    """A listing prefix may end in '/' or be empty, and is otherwise checked like a key."""
    assert checked_prefix("") == ""
    assert checked_prefix("_harvest/schema/") == "_harvest/schema/"
    with pytest.raises(StorageError):
        checked_prefix("../")


def test_parse_day_key_ignores_other_files() -> None:
    """Only four-segment device-day Parquet keys parse; checkpoint files and odd names do not."""
    assert parse_day_key("_harvest/checkpoint/snapshot.ckpt") is None
    assert parse_day_key("device_type=FMD/device_id=1/day=2024-02-05/x.json") is None
    assert parse_day_key("device_type=FMD/device_id=1/day=someday/x.parquet") is None
    assert parse_day_key("device_type=FMD/device_id=1/x.parquet") is None


def _write_hostile_archive(root: Path) -> dict[str, int]:
    """One day file per hostile uuid (and a plain one), written through the sink."""
    storage = LocalStorage(root)
    sink = ParquetSink(storage, SchemaRegistry(storage))
    rows: dict[str, int] = {}
    for index, uuid in enumerate(["1041", *HOSTILE]):
        records = [
            {
                "_id": f"{index:04d}{n:020x}",
                "date": f"2024-02-05T00:0{n}:00.000Z",
                "temp": float(n),
            }
            for n in range(index % 3 + 1)
        ]
        table = parse_window(orjson.dumps({"data": records}))
        window = WindowRows(MIDNIGHT, MIDNIGHT + dt.timedelta(hours=2), table)
        sink.write_day(Device(uuid, "FMD", ""), DAY, [window])
        rows[uuid] = len(records)
    return rows


def test_hostile_uuids_stay_inside_the_archive_and_read_back_raw(tmp_path: Path) -> None:
    """Day files of hostile uuids land under OUT only, and pyarrow.dataset with hive
    partitioning (and archive.readers) give every uuid back exactly as the server sent it."""
    # Deep enough that a uuid climbing five folders up would still land inside tmp_path.
    out = tmp_path.joinpath(*"abcdefg", "out")
    rows = _write_hostile_archive(out)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > len(rows)
    assert all(p.is_relative_to(out) for p in files)
    table = pds.dataset(out, format="parquet", partitioning="hive").to_table()
    found: dict[str, int] = {}
    for uuid in table.column("device_id").to_pylist():
        found[str(uuid)] = found.get(str(uuid), 0) + 1
    assert found == rows
    ours = readers.dataset(out).to_table().column("device_id").to_pylist()
    assert sorted(ours) == sorted(found_uuid for found_uuid, n in rows.items() for _ in range(n))


def test_duckdb_reads_hostile_uuids_back_decoded(tmp_path: Path) -> None:
    """DuckDB's read_parquet with hive_partitioning decodes %XX in partition values too."""
    out = tmp_path / "out"
    rows = _write_hostile_archive(out)
    query = (
        f"SELECT device_id, count(*) FROM read_parquet('{out}/device_type=*/**/*.parquet', "
        "hive_partitioning = true) GROUP BY device_id"
    )
    assert dict(duckdb.sql(query).fetchall()) == rows


def test_report_and_verify_see_raw_uuids(tmp_path: Path) -> None:
    """The report's footer scan and verify's per-device listing decode keys to raw uuids."""
    out = tmp_path / "out"
    rows = _write_hostile_archive(out)
    storage = LocalStorage(out)
    assert {uuid: days[DAY] for (_, uuid), days in stored_rows(storage).items()} == rows
    for uuid in rows:
        assert [p.first for p in data_files(storage, Device(uuid, "FMD", ""))] == [DAY]


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("device_type=FMD/device_id=7/day=2024-01-01/7_2024-01-01.parquet", "day"),
        ("_harvest/checkpoint/seg-0000000001-00000000-r.jsonl", "segment"),
        ("_harvest/checkpoint/snapshot.ckpt", "snapshot"),
        ("_harvest/devices.json", "other"),
    ],
)
def test_key_kind_names_what_a_key_holds(key: str, kind: str) -> None:
    """Keys map to the kinds named in write_<kind>/torn_<kind> points."""
    assert key_kind(key) == kind
