"""``harvester report``'s own building blocks at fleet scale: peak RSS and CPU per stage.

    .venv/bin/python scripts/bench_report.py [--smoke] [--devices N] [--days D]

A synthetic archive of ``--devices`` (1,000) devices with ``--days`` (1,400) UTC days each,
their first days spread so that the fleet spans five years (1.4 M device-days, drawn as
month columns, as a 1,000-device x 5-year hourly fleet is). Built as the sources report
reads them, without the millions of files and windows behind them:

- the checkpoint's ``DayTotals`` (every device-day but ~5 % never fetched; 1 % with a failed
  window; 12 finished windows otherwise),
- ``_harvest/availability.arrow`` written by ``record_availability`` (in a child process, so
  that writing it does not count) and read back by ``read_availability_columns``,
- the rows stored per device-day (``StoredRows``, as ``read_stored`` returns them from the
  files' footers; 0.5 % of the files deleted, 2 % short),
- ``devices.json``'s devices (36-character uuids, names).

Stages, in one fresh process with the console script's settings for ``report``
(``entry.keep_pandas_out``, ``entry.tune_process``), in ``collect_coverage``'s order and with
its ``release_free_heap`` calls: the imports (numpy, pyarrow, the report modules: the
baseline), reading the availability copy, loading the checkpoint's totals and the stored rows,
``coverage_parts`` (64 devices at a time) and ``joined``, ``periods`` + ``aggregate``,
``write_html``, ``write_png`` (matplotlib imported there). Prints per stage the RSS now, the
peak so far (``ru_maxrss``) and its rise over the baseline, and the stage's CPU (user +
system) and wall seconds. Reading the files' footers, one small read per file, is not part
of it (``bench_scale``'s ``report`` of a finished archive is). ``--smoke``: 20 devices x 60
days.

1,000 x 1,400 on the shared 2-core machine: before (``journal.days()``, dicts of dicts, a
``DayCell`` per device-day; the same stages, the dicts built from the same inputs), columnar
(one join of the whole fleet, the PNG one figure) and now (the join in parts, the PNG in
bands of 24 rows streamed into the file):

================  ========================  ======================  ======================
stage             before: peak (rise), CPU  columnar                now
================  ========================  ======================  ======================
baseline          86 MB                     97 MB                   86 MB
inputs            650 MB (+563), 7.4 s      207 MB (+111), 0.2 s    197 MB (+111), 0.2 s
the join          820 MB (+733), 46 s       283 MB (+187), 0.4 s    245 MB (+159), 0.6 s
aggregate, HTML   820 MB (+733), 3.9 s      283 MB (+187), 0.8 s    245 MB (+159), 0.7 s
PNG (1,000 rows)  1,231 MB (+1,145), 14 s   361 MB (+264), 9-10 s   245 MB (+159), 12 s
================  ========================  ======================  ======================

Of the rise now: the three inputs are 90 MB of columns, and reading the availability copy
holds its uuid column as text (56 MB) until it is encoded; the PNG's bands stay below what
the join left behind (one band: ~16 MB), most of its CPU matplotlib laying out 2,000 labels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from harvester.entry import (  # noqa: E402  -- after the path
    keep_pandas_out,
    release_free_heap,
    tune_process,
)

# The console script's process settings for ``report``, before numpy loads.
keep_pandas_out()
tune_process("report")

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from harvester.archive.availability import (  # noqa: E402  -- after the repository is on the path
    read_availability_columns,
    record_availability,
)
from harvester.archive.checkpoint.state import DayTotals  # noqa: E402
from harvester.archive.layout import DEVICES_NAME, HARVEST_DIR  # noqa: E402
from harvester.archive.storage import LocalStorage  # noqa: E402
from harvester.inspect.report import Coverage, StoredRows, read_devices, summary_line  # noqa: E402
from harvester.inspect.report_html import write_html  # noqa: E402
from harvester.inspect.report_join import coverage_parts, joined  # noqa: E402
from harvester.inspect.report_periods import aggregate, periods  # noqa: E402
from harvester.models import DEVICE_TYPES, Device, DeviceDays  # noqa: E402

FIRST = dt.date(2020, 1, 1)
SPAN = (dt.date(2024, 12, 31) - FIRST).days + 1


class Fleet:
    """The synthetic fleet: device ``i`` has days ``start[i] .. start[i] + days - 1``."""

    def __init__(self, devices: int, days: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.devices = [
            Device(
                str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)),
                DEVICE_TYPES[i % len(DEVICE_TYPES)],
                f"Site {i // 10} sensor {i}",
            )
            for i in range(devices)
        ]
        self.days = days
        spread = max(SPAN - days, 0)
        self.start = FIRST.toordinal() + np.arange(devices) * spread // max(devices - 1, 1)
        self.seed = seed

    def day_columns(self) -> tuple[np.typing.NDArray[np.int64], np.typing.NDArray[np.int64]]:
        """(device index, day ordinal) of every device-day, by uuid then day."""
        order = sorted(range(len(self.devices)), key=lambda i: self.devices[i].uuid)
        device = np.repeat(np.asarray(order, np.int64), self.days)
        day = self.start[device] + np.tile(np.arange(self.days), len(order))
        return device, day

    def counts(self) -> np.typing.NDArray[np.int64]:
        """The server's count of each device-day (hourly, a few days short or empty)."""
        rng = np.random.default_rng(self.seed + 1)
        n = len(self.devices) * self.days
        counts = np.where(rng.random(n) < 0.02, rng.integers(0, 24, n), 24)
        return counts.astype(np.int64)


def prepare(folder: Path, devices: int, days: int) -> None:
    """The inputs, in ``folder``: an archive's ``_harvest/availability.arrow`` and
    ``devices.json`` as a run writes them, the checkpoint's ``DayTotals`` and the stored
    rows as ``.npz`` columns (loaded at their own size, without the temporaries made here)."""
    fleet = Fleet(devices, days)
    device, day = fleet.day_columns()
    counts = fleet.counts()
    found = {}
    for block in range(devices):
        rows = slice(block * days, (block + 1) * days)
        has = counts[rows] > 0
        found[fleet.devices[int(device[rows.start])]] = DeviceDays(
            day[rows][has].astype(np.int32), counts[rows][has], np.zeros(int(has.sum()), np.int64)
        )
    storage = LocalStorage(folder)
    record_availability(storage, found, None)
    listed = orjson.dumps([{"uuid": d.uuid, "type": d.type, "name": d.name} for d in found])
    storage.write_file(f"{HARVEST_DIR}/{DEVICES_NAME}", lambda handle: handle.write(listed))
    rng = np.random.default_rng(fleet.seed + 2)
    fetched = rng.random(len(day)) >= 0.05
    failed = (rng.random(len(day)) < 0.01).astype(np.int32)
    uuids = sorted(d.uuid for d in fleet.devices)
    rank = np.asarray([uuids.index(d.uuid) for d in fleet.devices], np.int32)
    kinds = np.asarray([DEVICE_TYPES.index(d.type) for d in fleet.devices], np.int8)
    code = rank[device][fetched]
    np.savez(
        folder / "checkpoint.npz",
        uuids=np.asarray(uuids),
        code=code,
        type_code=kinds[device][fetched],
        day=day[fetched].astype(np.int32),
        windows_finished=np.where(failed, 11, 12)[fetched].astype(np.int32),
        records=counts[fetched],
        day_count=counts[fetched],
        windows_failed=failed[fetched],
    )
    draw = rng.random(len(code))
    on_disk = draw >= 0.005
    np.savez(
        folder / "stored.npz",
        code=code[on_disk],
        day=day[fetched][on_disk].astype(np.int32),
        rows=np.where(draw < 0.025, counts[fetched] // 2, counts[fetched])[on_disk],
    )


def load_inputs(folder: Path) -> tuple[DayTotals, StoredRows]:
    """The checkpoint's totals and the stored rows, as ``prepare`` wrote them."""
    with np.load(folder / "checkpoint.npz") as saved:
        uuids = saved["uuids"].tolist()
        days = DayTotals(uuids, *(saved[name] for name in _TOTALS))
    # Every device has checkpointed days here: its folder's type is that of its first.
    _, first = np.unique(days.code, return_index=True)
    kinds = days.type_code[first].tolist()
    folders = [(DEVICE_TYPES[kind], uuid) for kind, uuid in zip(kinds, uuids, strict=True)]
    with np.load(folder / "stored.npz") as saved:
        files = StoredRows(folders, saved["code"], saved["day"], saved["rows"])
    return days, files


_TOTALS = (
    "code",
    "type_code",
    "day",
    "windows_finished",
    "records",
    "day_count",
    "windows_failed",
)


class Stages:
    """Peak RSS so far and CPU seconds of each stage, printed as they end."""

    def __init__(self) -> None:
        self.baseline_mb = self._peak_mb()
        self._cpu = self._cpu_s()
        self._wall = time.perf_counter()
        print(f"{'stage':<24}{'RSS now':>9}{'peak':>8}{'over base':>11}{'CPU s':>8}{'wall s':>8}")
        print(f"{'imports (baseline)':<24}{self._now_mb():>7.0f}MB{self.baseline_mb:>6.0f}MB")

    @staticmethod
    def _peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @staticmethod
    def _now_mb() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20

    @staticmethod
    def _cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def done(self, name: str) -> None:
        peak, cpu, wall = self._peak_mb(), self._cpu_s(), time.perf_counter()
        print(
            f"{name:<24}{self._now_mb():>7.0f}MB{peak:>6.0f}MB{peak - self.baseline_mb:>9.0f}MB"
            f"{cpu - self._cpu:>8.2f}{wall - self._wall:>8.2f}"
        )
        self._cpu, self._wall = cpu, wall


def collect(folder: Path, stages: Stages) -> Coverage:
    """What ``inspect.sources.collect_coverage`` does, in its order and with the console
    script's ``release_free_heap`` where it calls it, the checkpoint and the footers loaded
    from ``prepare``'s columns (a part's stored rows taken from them): only the coverage
    outlives it."""
    storage = LocalStorage(folder)
    server = read_availability_columns(storage)
    release_free_heap()
    stages.done("availability")
    days, files = load_inputs(folder)
    stages.done("checkpoint, footers")
    release_free_heap()
    parts = []
    for part in coverage_parts(
        read_devices(storage), days, files.devices, server, functools.partial(_part_of, files)
    ):
        parts.append(part)
        release_free_heap()
    stages.done(f"coverage_parts ({len(parts)})")
    del days, files, server
    release_free_heap()
    coverage = joined(parts)
    stages.done("joined")
    return coverage


def _part_of(files: StoredRows, folders: Sequence[tuple[str, str]]) -> StoredRows:
    """The stored rows of ``folders``, as ``read_stored`` of those folders returns them."""
    wanted = set(folders)
    codes = [code for code, folder in enumerate(files.devices) if folder in wanted]
    rows = np.isin(files.code, codes)
    renumber = np.zeros(len(files.devices), np.int32)
    renumber[codes] = np.arange(len(codes), dtype=np.int32)
    return StoredRows(
        [files.devices[code] for code in codes],
        renumber[files.code[rows]],
        files.day[rows],
        files.rows[rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1400)
    parser.add_argument("--smoke", action="store_true", help="20 devices x 60 days")
    parser.add_argument("--prepare", type=Path, help="only write the inputs into this folder")
    args = parser.parse_args()
    if args.smoke:
        args.devices, args.days = 20, 60
    size = ["--devices", str(args.devices), "--days", str(args.days)]
    if args.prepare:
        prepare(args.prepare, args.devices, args.days)
        return
    with tempfile.TemporaryDirectory(prefix="bench-report-") as work:
        folder = Path(work)
        # In a child process: making the inputs must not count in this one's peak.
        subprocess.run([sys.executable, __file__, "--prepare", work, *size], check=True)
        print(f"{args.devices:,} devices x {args.days:,} days")
        stages = Stages()
        coverage = collect(folder, stages)
        assert coverage.first is not None
        assert coverage.last is not None
        unit, columns = periods(coverage.first, coverage.last)
        aggregate(coverage, columns)
        stages.done(f"aggregate ({len(columns)} {unit}s)")
        write_html(coverage, folder / "coverage.html", dt.datetime.now(dt.UTC))
        stages.done("HTML")
        from harvester.inspect.report_png import write_png

        write_png(coverage, folder / "coverage.png")
        stages.done("PNG")
        print(summary_line(coverage))


if __name__ == "__main__":
    main()
