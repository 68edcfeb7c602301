"""Timings of the data path: parse a window, write a device-day (prints, never asserts).

    .venv/bin/python scripts/bench_datapath.py [--rounds N]

Every contender runs once per round, rounds interleave the contenders (this machine is noisy),
and the table shows the median and the best round. One window is 7,200 SPOD-shaped records
at 1 Hz (~2.75 MB of JSON); one device-day is 12 such windows. A small window is 24 records
at a 5-minute cadence (~9 KiB), the kind the pool reads on the event loop, read with the
native reader and without it (an install without a C compiler).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester.archive.layout import day_file_key
from harvester.archive.schemas import SchemaRegistry
from harvester.archive.sink import ParquetSink, WindowRows
from harvester.archive.storage import LocalStorage
from harvester.models import Device
from harvester.records import native_reader
from harvester.records.parse import parse_window

RECORDS_PER_WINDOW = 7200
SMALL_WINDOW_RECORDS = 24
WINDOWS_PER_DAY = 12
DAY = dt.date(2024, 2, 5)
DEVICE = Device(uuid="1041", type="SPOD", name="METEC 1041")


def spod_window(
    index: int, rng: random.Random, records_per_window: int = RECORDS_PER_WINDOW
) -> bytes:
    """The body of window ``index`` of DAY: records spread evenly over its 2 hours (1 Hz by
    default), newest first, SPOD fields."""
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC) + dt.timedelta(hours=2 * index)
    step_s = 7200 // records_per_window
    records = []
    for second in range(0, 7200, step_s):
        stamp = start + dt.timedelta(seconds=second)
        records.append(
            {
                "_id": f"{index:04x}{second:020x}",
                "id": DEVICE.uuid,
                "date": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "pid1_PPB_Calc": round(rng.uniform(0, 500), 3),
                "pid1_mvRaw": round(rng.uniform(0, 3000), 1),
                "temp": round(rng.uniform(-10, 40), 2),
                "rh_Humd": round(rng.uniform(0, 100), 2),
                "pressure_mbar": round(rng.uniform(950, 1050), 2),
                "ws_speed": round(rng.uniform(0, 20), 2),
                "ws_direction": rng.randrange(360),
                "tc_temp": round(rng.uniform(20, 60), 2),
                "tc_heatOutput": rng.randrange(100),
                "tc_setPoint": 40,
                "batt_voltage": round(rng.uniform(11, 14), 3),
                "chrg_current": round(rng.uniform(0, 2), 3),
                "run_current": round(rng.uniform(0, 1), 3),
                "lat": 40.5955,
                "long": -105.1376,
            }
        )
    records.reverse()
    return orjson.dumps({"data": records})


def parse_with_orjson(body: bytes) -> pa.Table:
    return pa.Table.from_pylist(orjson.loads(body)["data"])


def pandas_to_parquet(body: bytes) -> None:
    """The typical user script, one file per window."""
    frame = pd.DataFrame(orjson.loads(body)["data"])
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    frame.to_parquet(io.BytesIO(), compression="zstd")


def pandas_day(bodies: list[bytes]) -> None:
    """The same job as parse_window + write_day, done with pandas: one file per day."""
    frame = pd.concat([pd.DataFrame(orjson.loads(body)["data"]) for body in bodies])
    frame["date"] = pd.to_datetime(frame["date"], utc=True, format="ISO8601")
    frame = frame.drop_duplicates("_id", keep="last").sort_values(["date", "_id"])
    frame.to_parquet(io.BytesIO(), compression="zstd", index=False)


def arrow_floor(bodies: list[bytes]) -> None:
    """Bare pyarrow: parse, concat, sort, zstd Parquet; no de-duplication, no window bounds."""
    table = pa.concat_tables([parse_window(body) for body in bodies])
    table = table.sort_by([("date", "ascending"), ("_id", "ascending")])
    pq.write_table(table, io.BytesIO(), compression="zstd")


def without_native_reader(action: Callable[[], object]) -> Callable[[], object]:
    """``action`` as an install without a C compiler runs it."""

    def run() -> object:
        # Any: the C module is private to native_reader (not exported), and typed as the module
        # alone, never None; swapped here as tests/test_native_reader.py's monkeypatch does.
        reader: Any = native_reader
        built = reader._flatjson
        reader._flatjson = None
        try:
            return action()
        finally:
            reader._flatjson = built

    return run


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU milliseconds of one call (CPU is less disturbed by neighbours)."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    rng = random.Random(5)
    bodies = [spod_window(i, rng) for i in range(WINDOWS_PER_DAY)]
    tables = [parse_window(body) for body in bodies]
    small = [spod_window(i, rng, SMALL_WINDOW_RECORDS) for i in range(WINDOWS_PER_DAY)]
    print(f"window: {RECORDS_PER_WINDOW} records, {len(bodies[0]) / 1e6:.2f} MB JSON")
    print(f"small window: {SMALL_WINDOW_RECORDS} records, {len(small[0]) / 1024:.1f} KiB JSON")

    def parse_small() -> None:
        for body in small:
            parse_window(body)

    pool = ThreadPoolExecutor(2)

    def parse_two_threads() -> None:
        list(pool.map(parse_window, bodies))

    def pandas_each() -> None:
        for body in bodies:
            pandas_to_parquet(body)

    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder))
        sink = ParquetSink(storage, SchemaRegistry(storage))
        day_key = day_file_key(DEVICE.type, DEVICE.uuid, DAY)
        starts = [
            dt.datetime.combine(DAY, dt.time(), dt.UTC) + dt.timedelta(hours=2 * i)
            for i in range(12)
        ]
        windows = [
            WindowRows(s, s + dt.timedelta(hours=2), t) for s, t in zip(starts, tables, strict=True)
        ]

        def write_new_day() -> None:
            storage.delete(day_key)
            sink.write_day(DEVICE, DAY, windows)

        def parse_and_write_new_day() -> None:
            storage.delete(day_key)
            sink.write_day(
                DEVICE,
                DAY,
                [
                    WindowRows(w.start, w.end, parse_window(b))
                    for w, b in zip(windows, bodies, strict=True)
                ],
            )

        contenders: dict[str, tuple[Callable[[], object], int]] = {
            "parse_window, 1 thread (ms/window)": (lambda: [parse_window(b) for b in bodies], 12),
            "parse_window, 2 threads (ms/window)": (parse_two_threads, 12),
            "parse_window, small window (ms/window)": (parse_small, 12),
            "parse_window, small window, no native reader (ms/window)": (
                without_native_reader(parse_small),
                12,
            ),
            "orjson.loads + Table.from_pylist (ms/window)": (
                lambda: [parse_with_orjson(b) for b in bodies],
                12,
            ),
            "orjson + pandas + to_parquet (ms/window)": (pandas_each, 12),
            "write_day, 12 x 7,200 rows, new file (ms/day)": (write_new_day, 1),
            "write_day, merge into existing file (ms/day)": (
                lambda: sink.write_day(DEVICE, DAY, windows),
                1,
            ),
            "day: 12 x parse_window + write_day (ms/day)": (parse_and_write_new_day, 1),
            "day: bare pyarrow floor, no de-dup (ms/day)": (lambda: arrow_floor(bodies), 1),
            "day: orjson + pandas, de-dup, to_parquet (ms/day)": (lambda: pandas_day(bodies), 1),
        }
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, (action, per) in contenders.items():
                wall, cpu = timed(action)
                walls[name].append(wall / per)
                cpus[name].append(cpu / per)
        pool.shutdown()
        size = sink.write_day(DEVICE, DAY, windows).bytes_written

    width = max(len(name) for name in walls)
    print(f"{'':{width}}  wall median  wall best  CPU median   ({rounds} interleaved rounds)")
    for name, values in walls.items():
        median, best, cpu = statistics.median(values), min(values), statistics.median(cpus[name])
        print(f"{name:{width}}  {median:11.2f}  {best:9.2f}  {cpu:10.2f}")
    print(f"day file: {size / 1e6:.2f} MB zstd Parquet for {RECORDS_PER_WINDOW * 12} rows")


if __name__ == "__main__":
    main()
