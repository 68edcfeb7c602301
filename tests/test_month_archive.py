"""Month files (``--partition month``) from the CLI against the simulator: exact against the
plain sequential client, kept for life, repaired after damage and kills, read by every reader,
sharded and on object storage.

The fleet spans a month's end (2024-01-30 .. 2024-02-02) so that every device has two month
files, one of them written from two days.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from harvester.archive import readers
from harvester.archive.layout import ARCHIVE_KEY, parse_file_key
from harvester.archive.storage import LocalStorage
from harvester.cli import main
from harvester.inspect.report import stored_rows
from tests.support.crash_harness import (
    EMAIL,
    PASSWORD,
    archive_problems,
    run_harvester,
    run_until_complete,
)
from tests.support.inproc import assert_same_records, record_requests
from tests.support.plain_client import collect_all
from tests.support.s3server import TEST_ENV, moto_server, new_bucket, s3_filesystem
from tests.support.simproc import SimFactory, SimulatorProcess

DEVICES, DAYS = 3, 4
FLEET = {"seed": 23, "devices": DEVICES, "days": DAYS, "start": "2024-01-30", "cadence_s": 900}
MONTHS = {"month=2024-01", "month=2024-02"}
DATA_FILES = "device_type=*/device_id=*/*/*.parquet"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    process = SimulatorProcess(**FLEET).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def expected(sim: SimulatorProcess) -> dict[str, dict[str, Any]]:
    return collect_all(sim.url, EMAIL, PASSWORD)


@pytest.fixture(scope="module")
def month_archive(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete month archive made from the CLI (tests that change it take a copy)."""
    out = tmp_path_factory.mktemp("month") / "out"
    code, stdout, _ = harvest(sim, out, "--partition", "month", "--concurrency", "8")
    assert code == 0, stdout
    return out


def harvest(
    sim: SimulatorProcess, out: Path | str, *extra: str, command: str = "run"
) -> tuple[int, str, str]:
    """``harvester <command>`` in-process; ``out`` a folder or an ``s3://`` URI."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [command, "--base-url", sim.url, "--email", EMAIL, "--password", PASSWORD]
    argv += ["--out", str(out), "--log-format", "json", "--rps", "500", *extra]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def copy_of(archive: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(archive, out)
    return out


def snapshot(out: Path) -> dict[str, bytes]:
    """Every data and checkpoint file, by path: what a refused run must leave as it was."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and (path.suffix == ".parquet" or "checkpoint" in path.parts)
    }


def test_month_archive_equals_the_plain_client_and_a_rerun_fetches_nothing(
    sim: SimulatorProcess, month_archive: Path, expected: dict[str, dict[str, Any]]
) -> None:
    """One file per device-month, named for the month, each sorted by date and holding each
    record once; together exactly the plain client's records; a second run sends no record
    request and the record of the partition says month."""
    files = sorted(month_archive.glob(DATA_FILES))
    assert {path.parent.name for path in files} == MONTHS
    assert len(files) == 2 * DEVICES
    for path in files:
        parsed = parse_file_key(path.relative_to(month_archive).as_posix())
        assert parsed is not None
        assert path.name == f"{parsed[1]}_{parsed[2].label}.parquet"
        table = pq.read_table(path)
        dates = table.column("date").to_pylist()
        assert dates == sorted(dates)
        assert len(set(table.column("_id").to_pylist())) == table.num_rows
        assert all(stamp.date() in parsed[2] for stamp in dates)
    table = ds.dataset(month_archive, format="parquet", partitioning="hive").to_table()
    assert_same_records(table, expected)
    assert orjson.loads((month_archive / ARCHIVE_KEY).read_bytes()) == {"partition": "month"}
    before = record_requests(sim.stats())
    assert harvest(sim, month_archive)[0] == 0
    assert record_requests(sim.stats()) == before


def test_verify_status_plan_and_report_read_month_files(
    sim: SimulatorProcess,
    month_archive: Path,
    expected: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """verify finds every device-day's count (UTC and a local zone), status counts every day
    complete, plan has nothing to fetch, and the report's stored rows per day are the plain
    client's (and its command draws the archive)."""
    code, stdout, _ = harvest(sim, month_archive, command="verify")
    assert code == 0, stdout
    assert f"stored {len(expected):,}" in stdout
    code, stdout, _ = harvest(sim, month_archive, "--timezone", "America/Chicago", command="verify")
    assert code == 0, stdout
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["status", "--out", str(month_archive), "--json"]) == 0
    status = orjson.loads(printed.getvalue())
    assert status["days"] == status["days_complete"] == DEVICES * DAYS
    assert status["records"] == len(expected)
    per_day: dict[tuple[str, dt.date], int] = {}
    for record in expected.values():
        when = dt.datetime.fromisoformat(record["date"].replace("Z", "+00:00")).date()
        per_day[record["id"], when] = per_day.get((record["id"], when), 0) + 1
    code, stdout, _ = harvest(sim, month_archive, command="plan")
    assert code == 0, stdout
    assert "to fetch         0 windows" in stdout
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main(["report", "--out", str(month_archive), "--output-dir", str(tmp_path)])
    assert code == 0, printed.getvalue()
    assert f"stored {len(expected):,} of {len(expected):,} server records" in printed.getvalue()
    stored = stored_rows(LocalStorage(month_archive))
    assert {(uuid, day): n for (_, uuid), days in stored.items() for day, n in days.items()} == (
        per_day
    )


def test_readers_and_the_readme_queries_see_every_record(
    month_archive: Path, expected: dict[str, dict[str, Any]]
) -> None:
    """readers.dataset, DuckDB and Polars read the month archive whole, with string device
    ids and ``month`` as YYYY-MM text; the README's per-device daily mean runs on it."""
    table = readers.dataset(month_archive).to_table()
    assert table.num_rows == len(expected)
    assert table.schema.field("month").type == pa.string()
    assert set(pc.unique(table.column("month")).to_pylist()) == {"2024-01", "2024-02"}
    assert readers.dataset(month_archive, "RAMP").to_table().num_rows > 0
    glob = f"{month_archive}/device_type=*/**/*.parquet"
    count = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true, "
        "union_by_name = true, hive_types = {'device_type': VARCHAR, 'device_id': VARCHAR, "
        "'month': VARCHAR})"
    ).fetchall()
    assert count == [(len(expected),)]
    daily = duckdb.sql(
        f"SELECT device_id, date_trunc('day', date) AS day, avg(temp) "
        f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true) "
        "GROUP BY ALL"
    ).fetchall()
    assert len(daily) == DEVICES * DAYS
    hive = {"device_type": pl.String, "device_id": pl.String, "month": pl.String}
    ramp = pl.scan_parquet(
        f"{month_archive}/device_type=RAMP/**/*.parquet",
        hive_partitioning=True,
        hive_schema=hive,
    ).collect()
    assert ramp.height == table.filter(pc.equal(table.column("device_type"), "RAMP")).num_rows


def test_a_run_asking_for_the_other_partition_is_refused(
    sim: SimulatorProcess, month_archive: Path, tmp_path: Path
) -> None:
    """--partition day on a month archive (and month on an archive of day files from before
    the record) exits 2 with one line, for run and plan, and leaves data and checkpoint as
    they were; the same request without the option runs."""
    out = copy_of(month_archive, tmp_path)
    before = snapshot(out)
    for command in ("run", "plan"):
        code, stdout, stderr = harvest(sim, out, "--partition", "day", command=command)
        assert code == 2, stdout
        assert stderr.count("harvester: error:") == 1
        line = next(line for line in stderr.splitlines() if "harvester: error:" in line)
        assert "--partition day" in line
        assert "--partition month" in line
    assert snapshot(out) == before
    assert harvest(sim, out, "--partition", "DAY")[0] == 2
    days = tmp_path / "days"
    assert harvest(sim, days, "--devices", "1001")[0] == 0
    (days / ARCHIVE_KEY).unlink()  # as an archive from before the record
    before = snapshot(days)
    assert harvest(sim, days, "--partition", "month")[0] == 2
    assert snapshot(days) == before
    assert harvest(sim, days, "--devices", "1001")[0] == 0
    assert orjson.loads((days / ARCHIVE_KEY).read_bytes()) == {"partition": "day"}


def test_a_cut_month_file_and_the_days_its_repair_lost_come_back(
    sim: SimulatorProcess,
    month_archive: Path,
    expected: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """A January file cut in half, then a run of Jan 31 only: that day is fetched again and
    the file rewritten without Jan 30, which verify reports; the next full run sees the file
    short of the rows the checkpoint vouches for, fetches January again, and ends exact."""
    out = copy_of(month_archive, tmp_path)
    victim = sorted(out.rglob("*_2024-01.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    code, stdout, stderr = harvest(sim, out, "--since", "2024-01-31", "--until", "2024-01-31")
    assert code == 0, stdout
    assert '"event":"day_file_damaged"' in stderr
    assert {stamp.day for stamp in pq.read_table(victim).column("date").to_pylist()} == {31}
    assert harvest(sim, out, command="verify")[0] == 1
    code, stdout, stderr = harvest(sim, out)
    assert code == 0, stdout
    assert "fewer than the" in stderr
    assert archive_problems(out, expected) == []
    assert harvest(sim, out, command="verify")[0] == 0


def test_shards_share_one_month_archive(
    sim: SimulatorProcess, expected: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Two shards into one OUT: the first records month, the second follows it unasked and
    is refused day; together they store exactly the plain client's records."""
    out = tmp_path / "out"
    assert harvest(sim, out, "--shard", "0/2", "--partition", "month")[0] == 0
    assert harvest(sim, out, "--shard", "1/2", "--partition", "day")[0] == 2
    assert harvest(sim, out, "--shard", "1/2")[0] == 0
    assert {path.parent.name for path in out.glob(DATA_FILES)} == MONTHS
    assert_same_records(readers.dataset(out).to_table(), expected)
    assert harvest(sim, out, command="verify")[0] == 0


@pytest.mark.slow
def test_kills_at_the_month_merge_then_resume_are_exact(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """SIGKILL before a month file's rename, after a torn one, between a merge and its
    checkpoint entry, and mid-fetch, each in a fresh process; the resumed archive is exact."""
    fleet = {**FLEET, "devices": 2}
    sim = simulator(latency_ms=10, fault_rate=0.1, fault_kinds="500,reset,truncated", **fleet)
    out = tmp_path / "out"
    run = ("--rps", "200", "--concurrency", "4", "--partition", "month")
    killed = 0
    for spec in ["write_day:3", "torn_day:2:torn", "day_written:4", "fetched:40"]:
        outcome = run_harvester(sim.url, out, *run, crash_at=spec)
        assert outcome.returncode in (-9, 0, 1), outcome.stderr[-2000:]
        killed += outcome.killed
    assert killed >= 3
    final = run_until_complete(sim.url, out, run)
    assert final[-1].returncode == 0, final[-1].stderr[-2000:]
    assert {path.parent.name for path in out.glob(DATA_FILES)} == MONTHS
    assert archive_problems(out, collect_all(simulator(**fleet).url, EMAIL, PASSWORD)) == []


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    with moto_server() as url:
        yield url


@pytest.mark.slow
def test_a_month_archive_on_object_storage(
    sim: SimulatorProcess, expected: dict[str, dict[str, Any]], endpoint: str
) -> None:
    """--out s3://... --partition month: month objects, exact, the record in the bucket, a
    request for day refused, verify and readers.dataset on the bucket agree."""
    bucket = new_bucket(endpoint)
    uri = f"s3://{bucket}/arch"
    s3 = ("--s3-endpoint", endpoint)
    code, stdout, stderr = harvest(sim, uri, *s3, "--partition", "month", "--concurrency", "8")
    assert code == 0, stdout + stderr[-2000:]
    filesystem = s3_filesystem(endpoint)
    with filesystem.open_input_stream(f"{bucket}/arch/{ARCHIVE_KEY}") as stream:
        assert orjson.loads(stream.read()) == {"partition": "month"}
    assert harvest(sim, uri, *s3, "--partition", "day")[0] == 2
    assert harvest(sim, uri, *s3, command="verify")[0] == 0
    located = f"{uri}?endpoint_override={endpoint.removeprefix('http://')}&scheme=http"
    table = readers.dataset(located).to_table()
    assert set(pc.unique(table.column("month")).to_pylist()) == {"2024-01", "2024-02"}
    assert_same_records(table, expected)
