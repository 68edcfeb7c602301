"""Timings of the checkpoint journal at scale; prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_checkpoint.py [--windows 1000000] [--rounds 3]

Builds a checkpoint of N finished windows (devices x days x 12 two-hour slots) in a temporary
folder and measures, in interleaved rounds (the machine is noisy: read medians and best):
recording one window, flushing one small segment, opening a compacted snapshot of N windows,
opening N windows left in segments (a crash before any compaction), one planner lookup, and
``days()``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.storage import LocalStorage
from harvester.models import WINDOW, FinishedWindow

DAY0 = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)


def windows(count: int, devices: int) -> list[FinishedWindow]:
    """Device by device, day by day, as the planner orders the work (so a segment holds few)."""
    result = []
    per_device = -(-count // devices)
    for i in range(count):
        device, slot = divmod(i, per_device)
        start = DAY0 + slot * WINDOW
        uuid = f"{device:08x}-0000-4000-8000-{device:012x}"
        result.append(FinishedWindow(uuid, "SPOD", start, start + WINDOW, 7200, 86_400, True))
    return result


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def lookup_cost(journal: CheckpointJournal, window: FinishedWindow, lookups: int = 10_000) -> float:
    """Seconds per ``finished_for`` of a device-day holding 12 windows."""
    started = time.perf_counter()
    for _ in range(lookups):
        journal.finished_for(window.device_uuid, window.day)
    return (time.perf_counter() - started) / lookups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--segments", type=int, default=1_000, help="segments for N windows")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    entries = windows(args.windows, args.devices)
    results: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            in_segments = LocalStorage(Path(tmp) / f"segments-{round_number}")
            journal = CheckpointJournal.open(
                in_segments, "bench", compact_after_segments=args.segments + 1
            )
            per_segment = max(1, args.windows // args.segments)
            record_time = flush_time = 0.0
            for lo in range(0, args.windows, per_segment):
                batch = entries[lo : lo + per_segment]
                started = time.perf_counter()
                for window in batch:
                    journal.record([window])
                record_time += time.perf_counter() - started
                flush_time += timed(journal.flush)
            note("record one window (us)", record_time / args.windows * 1e6)
            note(f"flush one segment of {per_segment} (ms)", flush_time / args.segments * 1e3)
            note(
                f"open {args.windows:,} in {args.segments} segments (s)",
                timed(functools.partial(CheckpointJournal.open, in_segments, "reader")),
            )
            note(
                f"open {args.windows:,} from the snapshot (s)",
                timed(functools.partial(CheckpointJournal.open, in_segments, "reader")),
            )
            opened = CheckpointJournal.open(in_segments, "reader")
            note("finished_for one device-day (us)", lookup_cost(opened, entries[0]) * 1e6)
            opened.record([entries[0]])
            note("days() after one record (s)", timed(opened.days))
            small = CheckpointJournal.open(LocalStorage(Path(tmp) / f"small-{round_number}"), "b")
            small_flushes = 50
            started = time.perf_counter()
            for i in range(small_flushes):
                small.record(entries[i * 40 : (i + 1) * 40])
                small.flush()
            note("flush one segment of 40 (ms)", (time.perf_counter() - started) / 50 * 1e3)
    print(f"checkpoint benchmark: {args.windows:,} windows, {args.rounds} rounds")
    print(f"{'measure':<48} {'median':>10} {'best':>10}")
    for name, values in results.items():
        print(f"{name:<48} {statistics.median(values):>10.3f} {min(values):>10.3f}")


if __name__ == "__main__":
    main()
