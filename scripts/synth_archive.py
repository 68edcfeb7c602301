"""A half-done and a finished archive of a simulator fleet, built without fetching a window.

    .venv/bin/python scripts/synth_archive.py --out DIR [--devices 1000] [--days 1826]
        [--partition month|day]

Harvesting 1,000 devices x 5 years hourly (16.9 M windows) through the simulator takes hours;
this writes, in minutes, what the harvester would have left: ``DIR/half`` (every device's first
half of its days finished) and ``DIR/finished`` (every day finished), such that a run resumed
against the same simulator reuses every finished window and ``verify`` finds no mismatch.

- ``_harvest/`` state (``archive.json``, the device list, ``availability.arrow``, a run
  manifest) is written by a real ``harvester run`` against the simulator, interrupted as soon as
  its plan is ready; what it fetched meanwhile (data files, checkpoint segments, schema
  sources) is removed.
- Counts come from the simulator's own functions (``simulator.fleet``, its ``Timeline``), in
  closed form per device: available days (their count and last record, in UTC, as
  ``SimulatedData`` answers them), and per two-hour slot the records of ``[start, end)``. The
  available days are checked against the ``availability.arrow`` the run wrote.
- Data files hold the simulator's records, rendered by its ``records`` module (one body per
  device and firmware shape), parsed by the harvester's ``parse_window``, widened into the
  type's ``SchemaRegistry`` and conformed to it as the sink does, at the keys ``layout`` builds,
  with the sink's Parquet options. Devices are written in discovery order (type, uuid), days
  ascending, so each file is on the registry's schema of that moment, as in a real run; the
  finished archive is the half-done one resumed (its first-half files hard links, the month
  straddling the half rewritten whole) and ends as a run does, with ``align_files``.
- The checkpoint snapshot (``checkpoint.format.SCHEMA``, kind ``fin``, one row per planned
  window: slots starting at or before the day's last record; ``sealed`` as ``WindowJob.sealed``)
  is built as columns and written with ``format.write_snapshot``, then opened once with
  ``CheckpointJournal.open`` and compacted, so that the snapshot is in whatever form the
  current code leaves (a row per whole-slot day, as a harvest's compaction writes it).

Data files are written straight to disk (no fsync; the harvester's storage seam fsyncs every
file, which at ~1.4 M day files would take hours). ``DIR/synth.json`` records what was built;
``build`` reuses a matching one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from harvester.archive.checkpoint import format as fmt  # noqa: E402
from harvester.archive.checkpoint.journal import CheckpointJournal  # noqa: E402
from harvester.archive.layout import (  # noqa: E402
    AVAILABILITY_NAME,
    CHECKPOINT_PREFIX,
    DAY,
    HARVEST_DIR,
    LOCK_KEY,
    MONTH,
    PARTITIONS,
    SCHEMA_PREFIX,
    SNAPSHOT_NAME,
    partition_file_key,
    temporary_name,
)
from harvester.archive.schemas import SchemaRegistry  # noqa: E402
from harvester.archive.sink import DEVICE_KEYS, ParquetSink  # noqa: E402
from harvester.archive.storage import LocalStorage  # noqa: E402
from harvester.logging import configure_logging  # noqa: E402
from harvester.records.parse import DATE_FIELD, ID_FIELD, parse_window  # noqa: E402
from harvester.records.schema import conform, unify  # noqa: E402
from harvester.simulator.fleet import SimDevice, build_fleet  # noqa: E402
from harvester.simulator.options import SimulatorOptions  # noqa: E402
from harvester.simulator.records import window_body  # noqa: E402

EMAIL, PASSWORD = "demo@example.com", "demo"
DAY_S: Final = 86_400
SLOT_S: Final = 7_200
SLOTS: Final = 12
CADENCE_S: Final = 3_600
MANIFEST: Final = "synth.json"
#: Bump when what ``build`` writes changes, so that a kept archive is not reused.
SYNTH_VERSION: Final = 1

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# What the package logs while building goes to stderr, warnings only: stdout is for results.
configure_logging(verbosity=-1)


def simulator_options(devices: int, days: int) -> SimulatorOptions:
    """The options ``bench_scale`` starts its simulator with (``--devices --days --cadence-s``)."""
    return SimulatorOptions(devices=devices, days=days, cadence_s=CADENCE_S)


# ---------------------------------------------------------------- what the simulator answers


@dataclass(frozen=True)
class History:
    """One device's available UTC days, as ``SimulatedData`` answers them, and its slots."""

    device: SimDevice
    day_s: IntArray
    """Epoch second of each available day's midnight (UTC), ascending."""
    counts: IntArray
    last_s: IntArray
    """Each day's last record (epoch second)."""
    slot_records: IntArray
    """(days, 12): records of ``[slot start, slot end)`` (no later than the present)."""
    planned: BoolArray
    """(days, 12): slots the planner plans (they start at or before the day's last record)."""

    @property
    def half(self) -> int:
        """Days finished in the half-done archive: the first half."""
        return len(self.day_s) // 2


def history(device: SimDevice, now_s: int) -> History:
    """The device's days and slots from its timeline, in closed form (no record rendered)."""
    timeline = device.timeline
    limit = now_s + 1
    last = int(timeline.last_before(np.array([limit], np.int64))[0])
    first = timeline.first
    if first is None or last < 0:
        empty = np.zeros(0, np.int64)
        grid = np.zeros((0, SLOTS), np.int64)
        return History(device, empty, empty, empty, grid, grid.astype(np.bool_))
    midnights = np.arange(first // DAY_S, last // DAY_S + 2, dtype=np.int64) * DAY_S
    lows, highs = np.minimum(midnights[:-1], limit), np.minimum(midnights[1:], limit)
    counts = timeline.count_before(highs) - timeline.count_before(lows)
    lasts = timeline.last_before(highs)
    keep = counts > 0
    day_s = midnights[:-1][keep]
    starts = (day_s[:, None] + np.arange(SLOTS, dtype=np.int64) * SLOT_S).ravel()
    ends = np.minimum(starts + SLOT_S, limit)
    records = timeline.count_before(ends) - timeline.count_before(np.minimum(starts, limit))
    planned = starts.reshape(-1, SLOTS) <= lasts[keep][:, None]
    return History(device, day_s, counts[keep], lasts[keep], records.reshape(-1, SLOTS), planned)


def fleet_histories(devices: int, days: int) -> list[History]:
    """Every device's history, in discovery order (type, uuid)."""
    options = simulator_options(devices, days)
    now_s = int(options.initial_now().timestamp())
    fleet = sorted(build_fleet(options), key=lambda d: (d.type, d.uuid))
    return [history(device, now_s) for device in fleet]


# ---------------------------------------------------------------- the checkpoint snapshot


def snapshot_rows(histories: Sequence[History], finished: Callable[[History], int]) -> pa.Table:
    """``format.SCHEMA`` rows (kind ``fin``) of every planned window of each device's first
    ``finished(history)`` days, sorted by (uuid, start)."""
    ordered = sorted(histories, key=lambda h: h.device.uuid)
    parts: dict[str, list[Any]] = {k: [] for k in ("dev", "start", "records", "count", "sealed")}
    for code, item in enumerate(ordered):
        n = finished(item)
        planned = item.planned[:n]
        starts = item.day_s[:n, None] + np.arange(SLOTS, dtype=np.int64) * SLOT_S
        # WindowJob.sealed: end <= how far the device reported (its last day: the last record;
        # every earlier day: the day's end).
        until = item.day_s[:n] + DAY_S
        if n == len(item.day_s) and n:
            until[-1] = item.last_s[-1]
        parts["dev"].append(np.full(int(planned.sum()), code, np.int32))
        parts["start"].append(starts[planned])
        parts["records"].append(item.slot_records[:n][planned])
        parts["count"].append(np.broadcast_to(item.counts[:n, None], planned.shape)[planned])
        parts["sealed"].append((starts + SLOT_S <= until[:, None])[planned])
    dev, start, records, count, sealed = (np.concatenate(parts[k]) for k in parts)
    rows = len(start)
    uuids = pa.array([h.device.uuid for h in ordered], pa.string())
    types = pa.array([h.device.type for h in ordered], pa.string())
    columns = {
        "kind": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(rows, np.int32)), pa.array([fmt.FINISHED])
        ).cast(pa.string()),
        "device_uuid": pa.DictionaryArray.from_arrays(pa.array(dev), uuids).cast(pa.string()),
        "device_type": pa.DictionaryArray.from_arrays(pa.array(dev), types).cast(pa.string()),
        "start_ms": pa.array(start * 1000),
        "end_ms": pa.array((start + SLOT_S) * 1000),
        "records": pa.array(records.astype(np.int64)),
        "day_count": pa.array(count.astype(np.int64)),
        "sealed": pa.array(sealed),
        "reason": pa.nulls(rows, pa.string()),
        "attempts": pa.nulls(rows, pa.int64()),
    }
    return pa.table(columns, schema=fmt.SCHEMA)


def write_checkpoint(out: Path, rows: pa.Table) -> None:
    """The snapshot through the storage seam, then one open and close of the journal."""
    storage = LocalStorage(out)
    key = f"{CHECKPOINT_PREFIX}/{SNAPSHOT_NAME}"
    storage.write_file(key, lambda handle: fmt.write_snapshot(handle, rows, 1))
    _open_compacted(storage)


def _open_compacted(storage: LocalStorage) -> None:
    """The journal opened once, its snapshot rewritten as a harvest leaves it (a row per
    whole-slot day): rows written a window each are read as they are, and kept so until a
    run compacts them, which would make every command reading them pay for 16.9 M rows."""
    journal = CheckpointJournal.open(storage, "synth", compact_after_segments=1)
    uuid = next(iter(journal.device_types()))
    day = dt.date.fromordinal(min(journal.finished_days(uuid)))
    # One window recorded again (the same entry) makes a segment, whose flush compacts.
    journal.record(finished=journal.finished_for(uuid, day)[:1])
    journal.flush()
    journal.close()


# ---------------------------------------------------------------- data files


class FileWriter:
    """Writes a device's records into the files of ``partition`` as the sink would."""

    def __init__(self, out: Path, partition: str) -> None:
        self.out = out
        self.partition = partition
        self.storage = LocalStorage(out)
        self.registry = SchemaRegistry(self.storage)
        self.files = 0
        self.bytes = 0
        self._conformed: dict[tuple[int, int], pa.Table] = {}

    def write_device(self, item: History, first_s: int, last_s: int) -> None:
        """The files of the periods holding the device's records in ``[first_s, last_s]``,
        each with every record of that span in its period (``last_s``: a last record, so
        nothing after the simulated present)."""
        device = item.device
        times = device.timeline.times_between(first_s, last_s)
        if not len(times):
            return
        change = device.firmware_change
        cut = len(times) if change is None else int(np.searchsorted(times, change, "left"))
        # One body per firmware shape, as windows before and after the update read.
        parts = [p for p in (times[:cut], times[cut:]) if len(p)]
        tables = [_parsed(device, part) for part in parts]
        clash = {*DEVICE_KEYS, self.partition} & set(tables[0].column_names)
        assert not clash, f"partition keys among the fields: {clash}"
        self._conformed.clear()
        bounds = [_period_bounds(table, self.partition) for table in tables]
        periods = sorted({p for found in bounds for p in found})
        for period in periods:
            pieces = [(i, *found[period]) for i, found in enumerate(bounds) if period in found]
            wanted = reduce(unify, (tables[i].schema for i, _, _ in pieces))
            schema = self.registry.widen(device.type, wanted)
            table = pa.concat_tables(
                [self._conform(tables, i, schema).slice(lo, hi - lo) for i, lo, hi in pieces]
            )
            self._write(device, period, table)

    def _conform(self, tables: list[pa.Table], index: int, schema: pa.Schema) -> pa.Table:
        key = (index, id(schema))
        found = self._conformed.get(key)
        if found is None:
            found = self._conformed[key] = conform(tables[index], schema)
        return found

    def _write(self, device: SimDevice, period: int, table: pa.Table) -> None:
        day = _period_day(period, self.partition)
        key = partition_file_key(device.type, device.uuid, day, self.partition)
        buffer = pa.BufferOutputStream()
        # ParquetSink._write's options: no dictionary for _id and date, zstd.
        dictionary = [name for name in table.column_names if name not in (ID_FIELD, DATE_FIELD)]
        pq.write_table(table, buffer, compression="zstd", use_dictionary=dictionary)
        payload = buffer.getvalue()
        self.registry.note_file(key)
        path = self.out / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary and a rename: the path may be a hard link shared with another archive.
        tmp = path.with_name(temporary_name(path.name, "synth"))
        with open(tmp, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
        self.files += 1
        self.bytes += payload.size

    def align(self) -> None:
        """What a run does once every window settled: each type's head on its schema."""
        sink = ParquetSink(self.storage, self.registry, self.partition)
        for device_type in sorted(self.registry.widened):
            sink.align_files(device_type)


def _parsed(device: SimDevice, times: IntArray) -> pa.Table:
    """The records at ``times`` as the harvester reads them, sorted by date (the sink's order:
    a device's dates are distinct)."""
    table = parse_window(window_body(device, times))
    return table.take(np.argsort(_millis(table), kind="stable"))


def _millis(table: pa.Table) -> IntArray:
    return np.asarray(table.column(DATE_FIELD).to_numpy().view(np.int64))


def _period_bounds(table: pa.Table, partition: str) -> dict[int, tuple[int, int]]:
    """Row ranges of each period (day or month number) of a date-sorted table."""
    days = _millis(table) // (DAY_S * 1000)
    if partition == DAY:
        ids = days
    else:
        ids = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    edges = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [len(ids)]))
    return {int(ids[a]): (int(a), int(b)) for a, b in zip(starts, stops, strict=True)}


def _period_day(period: int, partition: str) -> dt.date:
    """The first day of a period numbered as ``_period_bounds`` numbers them."""
    if partition == DAY:
        return dt.date(1970, 1, 1) + dt.timedelta(days=period)
    return dt.date(1970 + period // 12, period % 12 + 1, 1)


def _month_start_s(day_s: int) -> int:
    month = np.datetime64(day_s, "s").astype("datetime64[M]")
    return int(month.astype("datetime64[s]").astype(np.int64))


# ---------------------------------------------------------------- _harvest state from a real run


def _harvester(argv: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, SENSIT_EMAIL=EMAIL, SENSIT_PASSWORD=PASSWORD)
    return subprocess.Popen(
        [sys.executable, "-m", "harvester", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def prime(out: Path, base_url: str, partition: str) -> None:
    """``harvester run`` into ``out`` until its plan is ready (discovery recorded), then
    interrupted; what it fetched meanwhile is removed, its state files and manifest kept."""
    process = _harvester(
        [
            "run",
            "--base-url",
            base_url,
            "--out",
            str(out),
            "--partition",
            partition,
            "--log-format",
            "json",
            "--rps",
            "100000",
        ]
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if '"plan_ready"' in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=600)[1]
    if process.returncode not in (0, 130):
        raise RuntimeError(f"priming run exited {process.returncode}: {''.join(lines)}{rest}")
    for entry in out.iterdir():
        if entry.name.startswith("device_type="):
            shutil.rmtree(entry)
    shutil.rmtree(out / CHECKPOINT_PREFIX, ignore_errors=True)
    shutil.rmtree(out / SCHEMA_PREFIX, ignore_errors=True)
    for name in ("devices.json", AVAILABILITY_NAME, "archive.json"):
        if not (out / HARVEST_DIR / name).exists():
            raise RuntimeError(f"priming run left no {HARVEST_DIR}/{name}: {''.join(lines)}")


def check_availability(out: Path, histories: Sequence[History]) -> None:
    """The days and counts the run discovered are the ones computed here."""
    with pa.ipc.open_file(pa.memory_map(str(out / HARVEST_DIR / AVAILABILITY_NAME))) as reader:
        table = reader.read_all().sort_by([("uuid", "ascending"), ("day", "ascending")])
    ordered = sorted(histories, key=lambda h: h.device.uuid)
    uuids = np.concatenate([np.full(len(h.day_s), h.device.uuid, object) for h in ordered])
    days = np.concatenate([h.day_s // DAY_S for h in ordered])
    counts = np.concatenate([h.counts for h in ordered])
    found_days = table.column("day").cast(pa.int32()).to_numpy()
    same = (
        table.num_rows == len(days)
        and table.column("uuid").to_pylist() == uuids.tolist()
        and np.array_equal(found_days, days)
        and np.array_equal(table.column("count").to_numpy(), counts)
    )
    if not same:
        raise RuntimeError(
            f"the simulator's available days ({table.num_rows} device-days) differ from the "
            f"ones computed from its fleet ({len(days)}): synth_archive is out of date"
        )


# ---------------------------------------------------------------- the archives


@dataclass(frozen=True)
class Built:
    """What ``build`` made (``DIR/synth.json``)."""

    root: Path
    devices: int
    days: int
    partition: str
    device_days: int
    windows: int
    half_windows: int
    """Windows finished in the half-done archive (all of them in the finished one)."""
    half_files: int
    files: int
    seconds: dict[str, float]
    first_unfinished_ms: dict[str, int]
    """Per device uuid, the start of its first day the half-done archive holds nothing of."""

    @property
    def half(self) -> Path:
        return self.root / "half"

    @property
    def finished(self) -> Path:
        return self.root / "finished"

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": SYNTH_VERSION,
            "devices": self.devices,
            "days": self.days,
            "partition": self.partition,
            "device_days": self.device_days,
            "windows": self.windows,
            "half_windows": self.half_windows,
            "half_files": self.half_files,
            "files": self.files,
            "seconds": self.seconds,
            "first_unfinished_ms": self.first_unfinished_ms,
        }


def load(root: Path, devices: int, days: int, partition: str) -> Built | None:
    """The archives kept in ``root`` if they were built with these parameters."""
    try:
        found = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    wanted = {"version": SYNTH_VERSION, "devices": devices, "days": days, "partition": partition}
    if any(found.get(k) != v for k, v in wanted.items()):
        return None
    if not (root / "half").is_dir() or not (root / "finished").is_dir():
        return None
    fields = {k: v for k, v in found.items() if k != "version"}
    return Built(root=root, **fields)


def reopen(built: Built) -> None:
    """Both archives' checkpoints opened once with the current code, and compacted (which
    rewrites a snapshot of an older format, or of a window a row, in its own)."""
    for out in (built.half, built.finished):
        _open_compacted(LocalStorage(out))


def _link_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source`` whose data files are hard links (``cp -al``); the
    ``_harvest`` folder is copied (files there are small, and some are rewritten in place)."""
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name == HARVEST_DIR:
            shutil.copytree(entry, target / entry.name)
        else:
            subprocess.run(["cp", "-al", str(entry), str(target / entry.name)], check=True)


def clone(source: Path, target: Path) -> None:
    """A working copy of an archive for a run that writes into it (hard-linked data files:
    every write of the harvester replaces a file, never changes it in place)."""
    shutil.rmtree(target, ignore_errors=True)
    _link_tree(source, target)
    (target / LOCK_KEY).unlink(missing_ok=True)


def build(
    root: Path,
    base_url: str,
    devices: int,
    days: int,
    partition: str,
    log: Callable[[str], None] = lambda _: None,
) -> Built:
    """``root/half`` and ``root/finished`` (see the module docstring); ``root`` is replaced."""
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}")
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = round(now - clock, 1)
        clock = now
        log(f"{name}: {seconds[name]} s")

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    histories = fleet_histories(devices, days)
    lap("fleet")
    prime(root / "half", base_url, partition)
    check_availability(root / "half", histories)
    lap("prime")

    half = FileWriter(root / "half", partition)
    for item in histories:
        if item.half:
            half.write_device(item, int(item.day_s[0]), int(item.last_s[item.half - 1]))
    lap("half_files")
    half_rows = snapshot_rows(histories, lambda h: h.half)
    write_checkpoint(root / "half", half_rows)
    lap("half_checkpoint")

    _link_tree(root / "half", root / "finished")
    lap("finished_links")
    done = FileWriter(root / "finished", partition)
    for item in histories:
        if item.half == len(item.day_s):
            continue
        first = int(item.day_s[item.half])
        if partition == MONTH and item.half:
            # The month straddling the half is merged whole into its file, as a resumed run
            # merges the days it adds.
            first = max(_month_start_s(first), int(item.day_s[0]))
        done.write_device(item, first, int(item.last_s[-1]))
    done.align()
    lap("finished_files")
    rows = snapshot_rows(histories, lambda h: len(h.day_s))
    write_checkpoint(root / "finished", rows)
    lap("finished_checkpoint")

    built = Built(
        root=root,
        devices=devices,
        days=days,
        partition=partition,
        device_days=sum(len(h.day_s) for h in histories),
        windows=rows.num_rows,
        half_windows=half_rows.num_rows,
        half_files=half.files,
        files=sum(1 for _ in _data_files(root / "finished")),
        seconds=seconds,
        first_unfinished_ms={
            h.device.uuid: int(h.day_s[h.half]) * 1000 for h in histories if h.half < len(h.day_s)
        },
    )
    (root / MANIFEST).write_text(json.dumps(built.as_dict(), indent=2))
    return built


def _data_files(out: Path) -> Iterator[str]:
    for folder, _, names in os.walk(out):
        if Path(folder).relative_to(out).parts[:1] != (HARVEST_DIR,):
            yield from (n for n in names if n.endswith(".parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder (replaced)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1826)
    parser.add_argument("--partition", choices=PARTITIONS, default=MONTH)
    parser.add_argument(
        "--base-url", help="a simulator of this fleet already running (default: start one)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a matching build in --out (its checkpoints reopened with this code)",
    )
    args = parser.parse_args()
    built = load(args.out, args.devices, args.days, args.partition) if args.reuse else None
    if built is not None:
        reopen(built)
    elif args.base_url:
        built = build(args.out, args.base_url, args.devices, args.days, args.partition, log=_log)
    else:
        from tests.support.simproc import SimulatorProcess

        options = {"devices": args.devices, "days": args.days, "cadence_s": CADENCE_S}
        with SimulatorProcess(timeout_s=300, **options) as sim:
            built = build(args.out, sim.url, args.devices, args.days, args.partition, log=_log)
    print(json.dumps({k: v for k, v in built.as_dict().items() if k != "first_unfinished_ms"}))


def _log(line: str) -> None:
    print(f"synth_archive {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
