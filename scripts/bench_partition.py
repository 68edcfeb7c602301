"""Day or month files (``--partition``): what each costs to query and to top up.

    .venv/bin/python scripts/bench_partition.py [--smoke] [--work DIR] [--rounds N]

1. **Build.** The simulator in its own process (``--devices`` 200, ``--days`` 730, one record
   an hour), harvested from the CLI with ``--partition day`` into ``WORK/day`` (``--rps 100000
   --concurrency 64``; an archive already in WORK is reused as it is). ``WORK/month`` is made
   from it: every day file merged into its month file through ``ParquetSink.write_day``, the
   merge a ``--partition month`` run does for each day it fetched, without fetching the
   1.36 M windows again (a full run took about an hour on the shared 2-core machine). What a
   back-fill costs in each layout is then measured by real runs of both on the first
   ``--compare`` devices.
2. **Query.** On each archive, the same questions through DuckDB (``count(*)``; a per-device
   daily mean of ``temp``), Polars (the same two, the README's scan with the recorded schema)
   and pyarrow (``harvester.archive.readers.dataset``: ``count_rows``; the daily mean), each
   run in a fresh process and timed after its imports. Rounds alternate the layouts; each
   query runs once to warm the page cache, then ``--rounds`` times; the table shows medians
   and month's speed-up. Both layouts must give the same answer. ``--queries-only`` measures
   the archives already in ``--work`` again.
3. **Top-up at 1 Hz.** One SPOD-like device sending every second (18 fields, synthetic values),
   written through ``ParquetSink`` as a run writes it: a month back-filled day by day, then the
   day in progress topped up with one more 2-hour window (what every incremental run does) —
   in a day file, and in a month file that already holds the rest of the month. The same top-up
   for an hourly device shows why sparse devices do not mind.

Prints a table; writes every figure to ``--results`` (``bench-results/partition.json``).
``--smoke`` shrinks every size so the whole run takes seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from harvester.archive import readers  # noqa: E402  -- after the repository is on the path
from harvester.archive.layout import DAY, MONTH, PARTITIONS, parse_file_key  # noqa: E402
from harvester.archive.schemas import SchemaRegistry  # noqa: E402
from harvester.archive.settings import settle_partition  # noqa: E402
from harvester.archive.sink import ParquetSink, WindowRows  # noqa: E402
from harvester.archive.storage import LocalStorage  # noqa: E402
from harvester.logging import configure_logging  # noqa: E402
from harvester.models import Device, DeviceType  # noqa: E402
from tests.support.simproc import SimulatorProcess  # noqa: E402  -- the simulator, as tests run it

START = dt.date(2023, 1, 1)
EMAIL, PASSWORD = "demo@example.com", "demo"
HIVE = {DAY: pl.Date, MONTH: pl.String}
DUCK_HIVE = {DAY: "DATE", MONTH: "VARCHAR"}


# ------------------------------------------------------------------ 1. build


def harvest(sim: SimulatorProcess, out: Path, partition: str, *extra: str) -> dict[str, Any]:
    """``harvester run --partition`` from the CLI, in its own process: wall and CPU seconds,
    files and megabytes of the archive."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "harvester", "run", "--base-url", sim.url]
    command += ["--email", EMAIL, "--password", PASSWORD, "--out", str(out)]
    command += ["--partition", partition, "--rps", "100000", "--concurrency", "64"]
    command += ["-q", "--log-format", "json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"run --partition {partition}: {done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "how": "harvester run",
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        **_files(out),
        "summary": done.stdout.strip().splitlines(),
    }


def reused(out: Path) -> dict[str, Any]:
    """An archive already in WORK, as its first run's manifest describes it."""
    manifests = sorted((out / "_harvest" / "runs").glob("*.json"))
    first = json.loads(manifests[0].read_text())
    return {"how": "harvester run (earlier)", "wall_s": first["wall_s"], **_files(out)}


def _files(out: Path) -> dict[str, Any]:
    files = list(out.glob("device_type=*/device_id=*/*/*.parquet"))
    return {"files": len(files), "mb": round(sum(f.stat().st_size for f in files) / 1e6, 1)}


def repartition(day_archive: Path, out: Path) -> dict[str, Any]:
    """The month archive of the day archive's records: every day file merged into its month
    file through ``ParquetSink.write_day``, as a ``--partition month`` run merges each day it
    fetched (the same code, without the 1.36 M requests)."""
    started = time.perf_counter()
    source = LocalStorage(day_archive)
    storage = LocalStorage(out)
    settle_partition(storage, MONTH)
    sink = ParquetSink(storage, SchemaRegistry(storage), MONTH)
    days = sorted(
        (*parsed[:2], parsed[2].first, key)
        for key in source.list_files()
        if (parsed := parse_file_key(key)) is not None
    )
    for device_type, uuid, day, key in days:
        table = pq.read_table(pa.BufferReader(source.read_bytes(key)))
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        window = WindowRows(start, start + dt.timedelta(days=1), table)
        # cast: the type folder of a file the harvester wrote is one of DEVICE_TYPES.
        sink.write_day(Device(uuid, cast(DeviceType, device_type), uuid), day, [window])
    return {
        "how": "day files merged into month files by ParquetSink.write_day",
        "wall_s": round(time.perf_counter() - started, 1),
        **_files(out),
    }


def build(work: Path, devices: int, days: int, compare: int) -> dict[str, Any]:
    """The day archive of the whole fleet from a real run (an archive already in WORK is only
    topped up), the month archive made from it, and, on the first ``compare`` devices, a real
    run in each layout to compare what a back-fill costs."""
    sim = SimulatorProcess(
        seed=13, devices=devices, days=days, start=START.isoformat(), cadence_s=3600
    ).start()
    built: dict[str, Any] = {}
    try:
        if (work / DAY).exists():
            built[DAY] = reused(work / DAY)
        else:
            built[DAY] = harvest(sim, work / DAY, DAY)
        print(f"day archive: {built[DAY]}", flush=True)
        if not (work / MONTH).exists():
            built[MONTH] = repartition(work / DAY, work / MONTH)
            print(f"month archive: {built[MONTH]}", flush=True)
        if compare:
            listed = json.loads((work / DAY / "_harvest" / "devices.json").read_text())
            chosen = ",".join(sorted(device["uuid"] for device in listed)[:compare])
            for partition in PARTITIONS:
                with tempfile.TemporaryDirectory() as folder:
                    run = harvest(sim, Path(folder) / "out", partition, "--devices", chosen)
                built[f"{compare} devices, {partition}"] = run
                print(f"{compare} devices, {partition}: {run}", flush=True)
    finally:
        sim.stop()
    return built


# ------------------------------------------------------------------ 2. query


def _glob(out: Path) -> str:
    return f"{out}/device_type=*/**/*.parquet"


def _duckdb_source(out: Path, partition: str) -> str:
    types = f"{{'device_type': VARCHAR, 'device_id': VARCHAR, '{partition}': "
    return (
        f"read_parquet('{_glob(out)}', hive_partitioning = true, union_by_name = true, "
        f"hive_types = {types}{DUCK_HIVE[partition]}}})"
    )


def duckdb_count(out: Path, partition: str) -> Any:
    with duckdb.connect() as con:
        return con.sql(f"SELECT count(*) FROM {_duckdb_source(out, partition)}").fetchall()[0][0]


def duckdb_daily_mean(out: Path, partition: str) -> Any:
    query = (
        "SELECT device_id, date_trunc('day', date) AS day, avg(temp) AS temp "
        f"FROM {_duckdb_source(out, partition)} GROUP BY ALL"
    )
    with duckdb.connect() as con:
        return con.sql(f"SELECT count(*), round(sum(temp), 3) FROM ({query})").fetchall()[0]


def _polars_scan(out: Path, partition: str) -> pl.LazyFrame:
    fields = pl.from_arrow(readers.record_schema(out).empty_table())
    assert isinstance(fields, pl.DataFrame)
    hive = {"device_type": pl.String, "device_id": pl.String, partition: HIVE[partition]}
    return pl.scan_parquet(
        _glob(out),
        hive_partitioning=True,
        hive_schema=hive,
        schema=fields.schema,
        missing_columns="insert",
        cast_options=pl.ScanCastOptions(integer_cast="allow-float"),
    )


def polars_count(out: Path, partition: str) -> Any:
    return _polars_scan(out, partition).select(pl.len()).collect().item()


def polars_daily_mean(out: Path, partition: str) -> Any:
    daily = (
        _polars_scan(out, partition)
        .group_by("device_id", pl.col("date").dt.date().alias("day"))
        .agg(pl.col("temp").mean())
        .collect()
    )
    return daily.height, round(float(daily["temp"].sum()), 3)


def pyarrow_count(out: Path, _partition: str) -> Any:
    return readers.dataset(out).count_rows()


def pyarrow_daily_mean(out: Path, _partition: str) -> Any:
    table = readers.dataset(out).to_table(columns=["device_id", "date", "temp"])
    table = table.append_column("day", pc.floor_temporal(table.column("date"), unit="day"))
    daily = table.group_by(["device_id", "day"]).aggregate([("temp", "mean")])
    return daily.num_rows, round(pc.sum(daily.column("temp_mean")).as_py(), 3)


QUERIES: dict[str, Callable[[Path, str], Any]] = {
    "DuckDB count(*)": duckdb_count,
    "DuckDB daily mean": duckdb_daily_mean,
    "Polars count": polars_count,
    "Polars daily mean": polars_daily_mean,
    "pyarrow count_rows": pyarrow_count,
    "pyarrow daily mean": pyarrow_daily_mean,
}


def run_query(name: str, archive: Path, partition: str) -> dict[str, Any]:
    """One query, timed after the imports: what ``--query`` prints in its child process."""
    started = time.perf_counter()
    answer = QUERIES[name](archive, partition)
    return {"seconds": time.perf_counter() - started, "answer": str(answer)}


def _child_query(name: str, archive: Path, partition: str) -> dict[str, Any]:
    """``run_query`` in a fresh process: each library starts with no pool, cache or arena
    left by the others (in one process, pyarrow ran 2-3x slower after DuckDB and Polars)."""
    command = [sys.executable, __file__, "--query", name, str(archive), partition]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} on {archive}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_queries(work: Path, rounds: int) -> dict[str, Any]:
    """Median seconds of each query on each layout, and month's speed-up."""
    results: dict[str, Any] = {}
    for name in QUERIES:
        answers = {p: _child_query(name, work / p, p)["answer"] for p in PARTITIONS}
        if len(set(answers.values())) != 1:
            raise AssertionError(f"{name}: the layouts answer differently: {answers}")
        seconds: dict[str, list[float]] = {partition: [] for partition in PARTITIONS}
        for _ in range(rounds):
            for partition in PARTITIONS:
                timed = _child_query(name, work / partition, partition)
                seconds[partition].append(timed["seconds"])
        medians = {p: statistics.median(s) for p, s in seconds.items()}
        results[name] = {
            "answer": answers[DAY],
            "seconds": seconds,
            "median_s": medians,
            "month_speedup": medians[DAY] / medians[MONTH],
        }
        print(f"{name}: {medians}, month {results[name]['month_speedup']:.1f}x faster", flush=True)
    return results


# ------------------------------------------------------------------ 3. top-up at 1 Hz

DEVICE = Device(uuid="7001", type="SPOD", name="1 Hz")
FIELDS = 16


def _window(start: dt.datetime, cadence_s: int, hours: int, rng: np.random.Generator) -> WindowRows:
    """``hours`` of records every ``cadence_s`` from ``start``, typed as the parser types them."""
    first = int(start.timestamp())
    times = np.arange(first, first + hours * 3600, cadence_s, dtype=np.int64)
    columns: dict[str, pa.Array] = {
        "_id": pa.array([f"{t:012x}{7001:012x}" for t in times.tolist()], pa.string()),
        "date": pa.array(times * 1000, pa.timestamp("ms", tz="UTC")),
        "id": pa.array(np.full(times.size, 7001), pa.int64()),
    }
    for index in range(FIELDS):
        walk = np.cumsum(rng.normal(0, 0.05, times.size)) + 20 + index
        columns[f"field_{index:02d}"] = pa.array(np.round(walk, 2))
    end = start + dt.timedelta(hours=hours)
    return WindowRows(start, end, pa.table(columns))


def topup(cadence_s: int, days: int) -> dict[str, Any]:
    """Back-fill ``days`` days of one device into each layout, then top the last day up by
    one 2-hour window; seconds and bytes per write."""
    rng = np.random.default_rng(5)
    first = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    figures: dict[str, Any] = {}
    for partition in PARTITIONS:
        with tempfile.TemporaryDirectory() as folder:
            storage = LocalStorage(Path(folder))
            sink = ParquetSink(storage, SchemaRegistry(storage), partition)
            backfill: list[float] = []
            for offset in range(days):
                start = first + dt.timedelta(days=offset)
                hours = 24 if offset < days - 1 else 22
                window = _window(start, cadence_s, hours, rng)
                began = time.perf_counter()
                sink.write_day(DEVICE, start.date(), [window])
                backfill.append(time.perf_counter() - began)
            last = first + dt.timedelta(days=days - 1, hours=22)
            began = time.perf_counter()
            result = sink.write_day(DEVICE, last.date(), [_window(last, cadence_s, 2, rng)])
            figures[partition] = {
                "backfill_s": round(sum(backfill), 3),
                "last_day_write_s": round(backfill[-1], 4),
                "topup_s": round(time.perf_counter() - began, 4),
                "topup_mb": round(result.bytes_written / 1e6, 2),
                "rows_in_file": result.rows_in_file,
            }
    return figures


# ------------------------------------------------------------------ report


def print_table(results: dict[str, Any]) -> None:
    for name, run in results["build"].items():
        cpu = f", {run['cpu_s']} CPU-s" if "cpu_s" in run else ""
        print(
            f"{name:<20} {run['files']:>7} files, {run['mb']:>7} MB, {run['wall_s']:>7} s wall"
            f"{cpu} ({run['how']})"
        )
    print(f"{'query':<22} {'day':>9} {'month':>9} {'month faster':>13}")
    for name, query in results["queries"].items():
        medians = query["median_s"]
        print(
            f"{name:<22} {medians[DAY]:>8.3f}s {medians[MONTH]:>8.3f}s "
            f"{query['month_speedup']:>12.1f}x"
        )
    for label, figures in results["topup"].items():
        for partition, row in figures.items():
            print(
                f"{label} {partition:<5}: back-fill {row['backfill_s']} s "
                f"(last day {row['last_day_write_s']} s); top-up of a 2-h window "
                f"{row['topup_s']} s, {row['topup_mb']} MB rewritten ({row['rows_in_file']:,} rows)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds in all")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--compare", type=int, default=10, help="devices of the real run in each layout (0: none)"
    )
    parser.add_argument("--work", type=Path, help="where the two archives are (kept)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench-results")
    parser.add_argument(
        "--queries-only", action="store_true", help="measure the queries on the archives in --work"
    )
    parser.add_argument("--query", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.query:
        name, archive, partition = args.query
        print(json.dumps(run_query(name, Path(archive), partition)))
        return
    configure_logging("console", -1)
    devices, days, topup_days = (4, 40, 3) if args.smoke else (args.devices, args.days, 30)
    rounds = 1 if args.smoke else args.rounds
    if args.queries_only:
        print_table({"build": {}, "queries": measure_queries(args.work, rounds), "topup": {}})
        return
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        results: dict[str, Any] = {"devices": devices, "days": days}
        results["build"] = build(work, devices, days, 2 if args.smoke else args.compare)
        results["queries"] = measure_queries(work, rounds)
    results["topup"] = {
        "1 Hz": topup(1, topup_days),
        "hourly": topup(3600, topup_days),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    name = "partition-smoke.json" if args.smoke else "partition.json"
    (args.results / name).write_text(json.dumps(results, indent=2, default=str))
    print_table(results)


if __name__ == "__main__":
    main()
