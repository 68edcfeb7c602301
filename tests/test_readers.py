"""Every common reader sees every field and every row of an archive whose schema changed.

The archive is built once per module: a first run stops before the simulated firmware update
(after which FMD gains ``methane_ppm_avg``, RAMP gains ``pm10``, SPOD's ``tc_heatOutput``
turns fractional), a second run fetches the rest. The expected records come from the plain
sequential client (tests/support/plain_client.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import structlog

from harvester.archive import readers
from harvester.archive.schemas import SchemaRegistry
from harvester.archive.sink import ParquetSink, WindowRows
from harvester.archive.storage import LocalStorage
from harvester.cli import main
from harvester.models import Device
from harvester.records.parse import parse_window
from tests.support.plain_client import collect_all, list_devices, sign_in
from tests.support.simproc import SimulatorProcess

pytestmark = pytest.mark.slow

#: Fields that exist only after the simulated firmware update (2024-01-03 for these options;
#: the first run stops a day earlier, since its last window also returns the 00:00 record).
LATE_FIELDS = {"FMD": "methane_ppm_avg", "RAMP": "pm10"}


@dataclass(frozen=True)
class Archive:
    out: Path
    #: Expected records by _id, and each record's device type.
    records: dict[str, dict[str, Any]]
    type_of_record: dict[str, str]
    #: Per device type: the field names and the schema of the files after the first run.
    fields: dict[str, set[str]]
    first_run_schema: dict[str, pa.Schema]


def _run(url: str, out: Path, *extra: str) -> None:
    argv = ["run", "--base-url", url, "--email", "demo@example.com", "--password", "demo"]
    argv += ["--out", str(out), "--rps", "1000", "-q", *extra]
    saved = structlog.get_config()  # main() configures logging globally: restore it after
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(argv) == 0
    finally:
        structlog.configure(**saved)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    sim = SimulatorProcess(seed=9, devices=3, days=4, cadence_s=300).start()
    try:
        out = tmp_path_factory.mktemp("readers") / "out"
        _run(sim.url, out, "--until", "2024-01-01")
        first = {
            t: pq.read_schema(next((out / f"device_type={t}").rglob("*.parquet")))
            for t in ("FMD", "SPOD", "RAMP")
        }
        _run(sim.url, out)
        records = collect_all(sim.url, "demo@example.com", "demo")
        login = sign_in(sim.url, "demo@example.com", "demo")
        type_of_device = {d["uuid"]: d["type"] for d in list_devices(sim.url, login)}
    finally:
        sim.stop()
    type_of_record = {rid: type_of_device[r["id"]] for rid, r in records.items()}
    fields: dict[str, set[str]] = {}
    for rid, record in records.items():
        fields.setdefault(type_of_record[rid], set()).update(record)
    return Archive(out, records, type_of_record, fields, first)


def _ids_of_type(archive: Archive, device_type: str) -> set[str]:
    return {rid for rid, t in archive.type_of_record.items() if t == device_type}


def _non_null(values: list[Any]) -> int:
    return sum(value is not None for value in values)


def test_schema_changed_between_the_two_runs(archive: Archive) -> None:
    """The fixture is what it claims: the first run's files lack the later fields."""
    for device_type, late in LATE_FIELDS.items():
        assert late not in archive.first_run_schema[device_type].names
        assert late in archive.fields[device_type]
    assert pa.types.is_integer(archive.first_run_schema["SPOD"].field("tc_heatOutput").type)


@pytest.mark.parametrize("device_type", ["FMD", "SPOD", "RAMP"])
def test_pandas_reads_a_type_folder_with_every_field_and_row(
    archive: Archive, device_type: str
) -> None:
    """pandas.read_parquet(OUT/device_type=T), the default call, sees all fields and rows."""
    frame = pd.read_parquet(archive.out / f"device_type={device_type}")
    assert archive.fields[device_type] <= set(frame.columns)
    assert set(frame["_id"]) == _ids_of_type(archive, device_type)
    assert len(frame) == len(_ids_of_type(archive, device_type))
    late = LATE_FIELDS.get(device_type)
    if late is not None:
        expected = _non_null([archive.records[i].get(late) for i in frame["_id"]])
        assert 0 < int(frame[late].notna().sum()) == expected
    else:
        assert frame["tc_heatOutput"].dtype == "float64"


@pytest.mark.parametrize("device_type", ["FMD", "SPOD", "RAMP"])
def test_pyarrow_default_hive_dataset_of_a_type(archive: Archive, device_type: str) -> None:
    """pyarrow.dataset.dataset(OUT/device_type=T, partitioning="hive") sees everything."""
    folder = archive.out / f"device_type={device_type}"
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    assert archive.fields[device_type] <= set(table.column_names)
    assert set(table.column("_id").to_pylist()) == _ids_of_type(archive, device_type)
    assert table.num_rows == len(_ids_of_type(archive, device_type))


def test_pyarrow_whole_archive_with_the_recorded_schema(archive: Archive) -> None:
    """With the recorded unified schema, one dataset over OUT holds every field of every type."""
    schema = readers.unified_schema(archive.out)
    table = ds.dataset(
        archive.out, format="parquet", partitioning=readers.partitioning(), schema=schema
    ).to_table()
    all_fields = set().union(*archive.fields.values())
    assert all_fields <= set(table.column_names)
    assert table.num_rows == len(archive.records)
    assert set(table.column("_id").to_pylist()) == set(archive.records)
    assert table.schema.field("device_id").type == pa.string()
    assert table.schema.field("day").type == pa.date32()
    pm10 = _non_null([r.get("pm10") for r in archive.records.values()])
    assert table.column("pm10").null_count == table.num_rows - pm10
    types = dict(
        zip(table.column("_id").to_pylist(), table.column("device_type").to_pylist(), strict=True)
    )
    assert types == archive.type_of_record


def test_readers_dataset_helper_per_type_and_whole(archive: Archive) -> None:
    """harvester.archive.readers.dataset returns the same rows as the explicit calls."""
    whole = readers.dataset(archive.out).to_table()
    assert whole.num_rows == len(archive.records)
    ramp = readers.dataset(archive.out, "RAMP").to_table()
    assert set(ramp.column("_id").to_pylist()) == _ids_of_type(archive, "RAMP")
    assert "device_type" not in ramp.column_names
    assert ramp.schema.field("device_id").type == pa.string()


def test_duckdb_union_by_name_with_hive_types(archive: Archive) -> None:
    """DuckDB read_parquet(hive_partitioning, union_by_name, hive_types) sees it all."""
    source = (
        f"read_parquet('{archive.out}/device_type=*/**/*.parquet', hive_partitioning = true, "
        "union_by_name = true, hive_types = {'device_type': VARCHAR, 'device_id': VARCHAR, "
        "'day': DATE})"
    )
    connection = duckdb.connect()
    columns = connection.execute(f"SELECT * FROM {source} LIMIT 0").description
    all_fields = set().union(*archive.fields.values())
    assert all_fields <= {column[0] for column in columns}
    rows = connection.execute(
        f"SELECT count(*), count(DISTINCT _id), count(pm10), count(methane_ppm_avg), "
        f"any_value(typeof(device_id)) FROM {source}"
    ).fetchall()[0]
    values = list(archive.records.values())
    assert rows == (
        len(values),
        len(values),
        _non_null([r.get("pm10") for r in values]),
        _non_null([r.get("methane_ppm_avg") for r in values]),
        "VARCHAR",
    )


def test_polars_scan_parquet_with_hive_partitioning(archive: Archive) -> None:
    """Polars scans one type, and all of OUT, with hive partitioning and the recorded schema
    (it takes the first file's otherwise, and refuses files that lack one of its columns)."""
    hive_schema = {"device_type": pl.String, "device_id": pl.String, "day": pl.Date}
    ramp_fields = pl.from_arrow(readers.record_schema(archive.out, "RAMP").empty_table())
    assert isinstance(ramp_fields, pl.DataFrame)
    ramp = pl.scan_parquet(
        archive.out / "device_type=RAMP" / "**" / "*.parquet",
        hive_partitioning=True,
        hive_schema=hive_schema,
        schema=ramp_fields.schema,
        missing_columns="insert",
        cast_options=pl.ScanCastOptions(integer_cast="allow-float"),
    ).collect()
    assert archive.fields["RAMP"] <= set(ramp.columns)
    assert set(ramp["_id"]) == _ids_of_type(archive, "RAMP")
    assert ramp.height == len(_ids_of_type(archive, "RAMP"))
    assert ramp["pm10"].count() == _non_null([archive.records[i].get("pm10") for i in ramp["_id"]])
    empty = pl.from_arrow(readers.record_schema(archive.out).empty_table())
    assert isinstance(empty, pl.DataFrame)
    whole = pl.scan_parquet(
        f"{archive.out}/device_type=*/**/*.parquet",
        hive_partitioning=True,
        hive_schema=hive_schema,
        schema=empty.schema,
        missing_columns="insert",
        cast_options=pl.ScanCastOptions(integer_cast="allow-float"),
    ).collect()
    assert set().union(*archive.fields.values()) <= set(whole.columns)
    assert whole.height == len(archive.records)
    assert set(whole["_id"]) == set(archive.records)
    assert whole["device_id"].dtype == pl.String


def test_all_json_names_every_field_with_its_types(archive: Archive) -> None:
    """_harvest/schema/ALL.json lists each field once, with its type and its device types."""
    listing = orjson.loads((archive.out / "_harvest/schema/ALL.json").read_bytes())["fields"]
    by_name = {entry["name"]: entry for entry in listing}
    assert len(by_name) == len(listing)
    for device_type, fields in archive.fields.items():
        for name in fields:
            assert device_type in by_name[name]["device_types"]
    assert by_name["pm10"]["device_types"] == ["RAMP"]
    assert by_name["date"]["type"] == "timestamp[ms, tz=UTC]"
    assert by_name["tc_heatOutput"]["type"] == "double"


def _write_day(out: Path, device: Device, **fields: object) -> None:
    record = {"_id": "a1", "id": device.uuid, "date": "2024-03-01T01:00:00.000Z", **fields}
    table = parse_window(orjson.dumps({"data": [record]}))
    storage = LocalStorage(out)
    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    window = WindowRows(start, start + dt.timedelta(hours=2), table)
    ParquetSink(storage, SchemaRegistry(storage)).write_day(device, start.date(), [window])


def test_leading_zero_ids_stay_strings_and_old_archives_get_a_union(tmp_path: Path) -> None:
    """device_id=0041 reads as "0041"; without ALL.arrow the per-type schemas are unified."""
    _write_day(tmp_path, Device("0041", "SPOD", "a"), ws_speed=1.5)
    _write_day(tmp_path, Device("0042", "RAMP", "b"), pm10=3)
    (tmp_path / "_harvest/schema/ALL.arrow").unlink()
    table = readers.dataset(tmp_path).to_table()
    assert sorted(table.column("device_id").to_pylist()) == ["0041", "0042"]
    assert {"ws_speed", "pm10"} <= set(table.column_names)
    assert sorted(table.column("day").to_pylist()) == [dt.date(2024, 3, 1)] * 2


def test_an_empty_folder_is_a_clear_storage_error(tmp_path: Path) -> None:
    """Asking for the schema of a folder that is no archive says so."""
    from harvester.errors import StorageError

    with pytest.raises(StorageError, match="no recorded schema"):
        readers.unified_schema(tmp_path)
