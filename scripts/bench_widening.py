"""The cost of a schema widening in archives of K small day files, before and after the head
file alone carries it (prints, never asserts).

    .venv/bin/python scripts/bench_widening.py [--sizes 100,1000,10000] [--before REV]

Each archive holds K SPOD day files of 24 hourly records (10 days of K/10 devices), written by
the sink and aligned once. Then one more day arrives with a new field and an int column turned
fractional, and the run aligns the type as it does at its end. The table shows the time of
that step and what went through the storage seam. "before" is the same step with the sink of
git revision ``--before`` (the last whose ``align_files`` read and rewrote every file that
differed), loaded from git history into this process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import logging
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import orjson
import structlog

from harvester.archive import sink as new_sink
from harvester.archive.storage import LocalStorage, StorageLock
from harvester.models import Device
from harvester.records.parse import parse_window

#: The last revision whose align_files rewrote every file of a widened type: the parent of the
#: commit that made it rewrite the head alone.
BEFORE = "56eb47f^"
DAYS_PER_DEVICE = 10
FIRST_DAY = dt.date(2024, 2, 1)
ROOT = Path(__file__).resolve().parent.parent


class Counting:
    """The storage seam, counting data files written, bytes read whole, footers opened and
    data keys listed."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()

    def describe(self) -> str:
        return self.inner.describe()

    def write_file(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        self.counts["data files written" if key.endswith(".parquet") else "other writes"] += 1
        self.inner.write_file(key, write)

    def read_bytes(self, key: str) -> bytes:
        payload = self.inner.read_bytes(key)
        self.counts["bytes read"] += len(payload)
        return payload

    def open_input(self, key: str) -> BinaryIO:
        self.counts["footers opened"] += 1
        return self.inner.open_input(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list_files(self, prefix: str = "") -> list[str]:
        keys = self.inner.list_files(prefix)
        if prefix.startswith("device_type="):
            self.counts["data keys listed"] += len(keys)
        return keys

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def acquire_lock(self, key: str, owner: str) -> StorageLock:
        return self.inner.acquire_lock(key, owner)


def old_sink(revision: str) -> ModuleType:
    """``harvester/archive/sink.py`` of ``revision``, importing today's other modules."""
    source = subprocess.run(
        ["git", "show", f"{revision}:harvester/archive/sink.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("bench_old_sink", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_old_sink"] = module
    exec(compile(source, f"{revision}:harvester/archive/sink.py", "exec"), module.__dict__)
    return module


def window(day: dt.date, **fields: object) -> Any:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    records = [
        {"_id": f"{day:%Y%m%d}{hour:02d}", "date": f"{day}T{hour:02d}:00:00.000Z", "v": hour}
        | fields
        for hour in range(24)
    ]
    table = parse_window(orjson.dumps({"data": records}))
    return new_sink.WindowRows(start, start + dt.timedelta(days=1), table)


def build(module: ModuleType, folder: Path, files: int) -> None:
    storage = LocalStorage(folder)
    sink = module.ParquetSink(storage, module.SchemaRegistry(storage))
    for n in range(files // DAYS_PER_DEVICE):
        device = Device(uuid=f"{n:05d}", type="SPOD", name=str(n))
        for d in range(DAYS_PER_DEVICE):
            day = FIRST_DAY + dt.timedelta(days=d)
            sink.write_day(device, day, [window(day)])
    sink.align_files("SPOD")


def widen(module: ModuleType, folder: Path) -> tuple[float, Counter[str]]:
    """A new day with a new field and a fractional ``v``, then the end-of-run alignment."""
    storage = Counting(LocalStorage(folder))
    started = time.perf_counter()
    sink = module.ParquetSink(storage, module.SchemaRegistry(storage))
    day = FIRST_DAY + dt.timedelta(days=DAYS_PER_DEVICE)
    device = Device(uuid="00003", type="SPOD", name="3")
    sink.write_day(device, day, [window(day, co2_ppm=412.5, v=0.5)])
    sink.align_files("SPOD")
    return time.perf_counter() - started, storage.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--before", default=BEFORE, help="git revision of the old sink")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    contenders = {"before": old_sink(args.before), "after": new_sink}
    print(
        f"{'files':>7} {'sink':>6} {'widening s':>10} {'rewritten':>9} {'KB read':>8} "
        f"{'footers':>8} {'listed':>7}"
    )
    for files in (int(size) for size in args.sizes.split(",")):
        for name, module in contenders.items():
            with tempfile.TemporaryDirectory() as folder:
                build(module, Path(folder), files)
                seconds, counts = widen(module, Path(folder))
            rewritten = counts["data files written"] - 1  # the new day itself
            print(
                f"{files:>7,} {name:>6} {seconds:>10.3f} {rewritten:>9,} "
                f"{counts['bytes read'] / 1e3:>8,.1f} {counts['footers opened']:>8,} "
                f"{counts['data keys listed']:>7,}",
                flush=True,
            )


if __name__ == "__main__":
    main()
