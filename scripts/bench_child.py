"""One measured job of the benchmark, in a fresh process; prints one JSON line of figures.

    python scripts/bench_child.py harvest --base-url URL --out DIR [--concurrency N] [--rps R]
    python scripts/bench_child.py capture --base-url URL --out DIR     (bodies for floor/pandas)
    python scripts/bench_child.py floor   --bodies DIR --out DIR
    python scripts/bench_child.py floor-native --bodies DIR --out DIR  (our parser and options)
    python scripts/bench_child.py pandas  --bodies DIR --out DIR

``bench.py`` runs each job in its own process so that CPU time and peak RSS belong to that
job alone (the simulator runs in yet another process). CPU time is the process's user+system
time of every thread, measured around the work only: imports and reading bodies from disk are
not counted. ``harvest`` runs the real back-fill (``harvester.harvest.run_harvest``, the code
path of ``harvester run``) with an optional probe of the event loop's scheduling delay.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

LAG_PERIOD_S = 0.010


class LagProbe:
    """Wakes every 10 ms and records how late it woke: the event loop's scheduling delay."""

    def __init__(self) -> None:
        self.delays_ms: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PERIOD_S
            await asyncio.sleep(LAG_PERIOD_S)
            self.delays_ms.append(max(0.0, (loop.time() - due) * 1000))

    def summary(self) -> dict[str, float]:
        if not self.delays_ms:
            return {"samples": 0}
        ordered = sorted(self.delays_ms)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {
            "samples": len(ordered),
            "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(p99, 2),
            "max_ms": round(ordered[-1], 2),
        }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _config(args: argparse.Namespace) -> Any:
    from harvester.config import resolve_config

    flags = {
        "base_url": args.base_url,
        "email": "demo@example.com",
        "password": "demo",
        "out": args.out,
        "concurrency": args.concurrency,
        "rps": args.rps,
        "read_timeout_s": 30,
        "devices": args.devices,
        "device_type": args.device_type,
        "since": args.since,
        "until": args.until,
    }
    return resolve_config(flags, {})


def harvest(args: argparse.Namespace) -> dict[str, Any]:
    """The back-fill through ``run_harvest``, in a process set up as the console script sets
    it up (``tune_process``); the pool phase is timed from its start."""
    from harvester.entry import tune_process

    tune_process()
    from harvester.harvest import run_harvest
    from harvester.logging import configure_logging

    configure_logging("json", -1)
    config = _config(args)
    probe = LagProbe()
    marks: dict[str, float] = {}

    def mark_pool(*_: object) -> None:
        marks.setdefault("pool", time.perf_counter())

    async def main() -> Any:
        prober = asyncio.create_task(probe.run()) if args.probe_lag else None
        try:
            return await run_harvest(
                config,
                asyncio.Event(),
                on_pool=mark_pool,
            )
        finally:
            if prober is not None:
                prober.cancel()

    cpu, wall = time.process_time(), time.perf_counter()
    summary = asyncio.run(main())
    ended = time.perf_counter()
    pool_s = ended - marks.get("pool", wall)
    stats = summary.as_dict()
    return {
        "wall_s": ended - wall,
        "pool_s": pool_s,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": peak_rss_mb(),
        "windows": stats["windows_done"],
        "windows_failed": stats["windows_failed"],
        "records": stats["records"],
        "attempts": stats["attempts"],
        "rate_limited": stats["rate_limited"],
        "lag": probe.summary() if args.probe_lag else None,
    }


def capture(args: argparse.Namespace) -> dict[str, Any]:
    """The response bodies of the windows a run would fetch, saved as ``<n>.json`` files."""
    from harvester.api.client import ClientSettings, SensitClient
    from harvester.archive.checkpoint.journal import CheckpointJournal
    from harvester.archive.planning import make_plan
    from harvester.archive.storage import LocalStorage
    from harvester.fetch.discovery import discover
    from harvester.fetch.gate import RequestGate
    from harvester.logging import configure_logging

    configure_logging("json", -1)
    config = _config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    async def main() -> list[dict[str, Any]]:
        storage = LocalStorage(out / "journal")
        journal = CheckpointJournal.open(storage, "capture", compact=False)
        async with SensitClient(ClientSettings.from_config(config)) as client:
            availability = (await discover(client, config, RequestGate(1e6))).availability
            plan = make_plan(config, availability, journal, storage)
            index = []
            for number, job in enumerate(plan.jobs()):
                body = await client.fetch_window(job.device, job.start, job.end)
                (out / f"{number:06d}.json").write_bytes(body)
                index.append({"file": f"{number:06d}.json", "day": f"{job.device.uuid}/{job.day}"})
            return index

    index = asyncio.run(main())
    (out / "index.json").write_text(json.dumps(index))
    return {"windows": len(index), "bytes": sum((out / i["file"]).stat().st_size for i in index)}


def _bodies(folder: Path) -> list[tuple[str, bytes]]:
    index = json.loads((folder / "index.json").read_text())
    return [(item["day"], (folder / item["file"]).read_bytes()) for item in index]


def floor(args: argparse.Namespace, *, native: bool = False) -> dict[str, Any]:
    """The bare data path: parse → per-day concat, sort, de-dup → zstd Parquet files.

    No HTTP, no asyncio, no schema bookkeeping, no checkpoint: the least CPU the job can take
    with these libraries. The parser is pyarrow.json, or with ``native`` the harvester's own
    C reader (``harvester.records.native_reader``, pyarrow.json where it refuses a body) and the
    harvester's Parquet options (no dictionary for ``_id`` and ``date``), so that harvester ÷
    native floor is only our own overhead; the rest is independent of ``records.parse`` and
    ``sink`` on purpose.
    """
    import itertools

    import numpy as np
    import pyarrow as pa
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    from harvester.records.native_reader import read_flat_records

    bodies = _bodies(Path(args.bodies))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timestamp = pa.timestamp("ms", tz="UTC")

    def parse(body: bytes) -> pa.Table:
        table = read_flat_records(body) if native else None
        if table is None:
            options = pa_json.ReadOptions(block_size=len(body) + 1, use_threads=False)
            items = pa_json.read_json(io.BytesIO(body), read_options=options).column("data")
            table = pa.Table.from_struct_array(items.chunk(0).flatten())
        index = table.schema.get_field_index("date")
        return table.set_column(index, "date", table.column("date").cast(timestamp))

    records = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for number, (_, group) in enumerate(itertools.groupby(bodies, key=lambda item: item[0])):
        tables = [parse(body) for _, body in group if len(body) > 20]
        if not tables:
            continue
        day = pa.concat_tables(tables, promote_options="permissive")
        day = day.sort_by([("date", "ascending"), ("_id", "ascending")])
        ids = day.column("_id").to_numpy(zero_copy_only=False)
        day = day.filter(pa.array(np.concatenate(([True], ids[1:] != ids[:-1]))))
        records += day.num_rows
        keys = ("_id", "date") if native else ()
        dictionary = [name for name in day.column_names if name not in keys]
        pq.write_table(
            day, out / f"{number:06d}.parquet", compression="zstd", use_dictionary=dictionary
        )
    return {
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "records": records,
    }


def pandas_path(args: argparse.Namespace) -> dict[str, Any]:
    """The typical user script: ``orjson.loads`` + ``DataFrame`` + ``to_parquet``, one file
    per window, pandas defaults otherwise."""
    import orjson
    import pandas as pd

    bodies = _bodies(Path(args.bodies))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for number, (_, body) in enumerate(bodies):
        frame = pd.DataFrame(orjson.loads(body)["data"])
        records += len(frame)
        frame.to_parquet(out / f"{number:06d}.parquet")
    return {
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "records": records,
    }


def native_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The bare data path with the harvester's parser, Parquet options and process settings."""
    from harvester.entry import tune_process

    tune_process()
    return floor(args, native=True)


JOBS = {
    "harvest": harvest,
    "capture": capture,
    "floor": floor,
    "floor-native": native_floor,
    "pandas": pandas_path,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--base-url")
    parser.add_argument("--out", required=True)
    parser.add_argument("--bodies")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rps", type=float, default=1e6)
    parser.add_argument("--devices", help="comma-separated uuids (default all)")
    parser.add_argument("--device-type", default="ALL", help="FMD, SPOD, RAMP or ALL")
    parser.add_argument("--since")
    parser.add_argument("--until")
    parser.add_argument("--probe-lag", action="store_true")
    args = parser.parse_args()
    result = JOBS[args.job](args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
