"""Issue 13's scale scenario: a large fleet planned, started, resumed and inspected in flat memory.

    .venv/bin/python scripts/bench_scale.py [--devices 1000] [--days 1826] [--run-s 60]
        [--partition month|day] [--keep DIR | --reuse DIR] [--skip-empty] [--skip-archives]

A simulator of ``devices`` devices with ``days`` days of hourly data each; then, each in a fresh
process whose CPU time and peak RSS are its own (``os.wait4`` in a small launcher,
``measured_child.py``: a child of this process would report this process's peak as its own):

- an EMPTY archive: ``harvester plan``, and ``harvester run`` interrupted after ``run_s``
  seconds (its first minute). From the run's JSON log, the seconds from the end of discovery
  (the last available-dates answer, ``discovered``) to the pool's start (``plan_ready``, after
  which the first records request goes out at once);
- a HALF-DONE archive (every device's first half of its days finished), built by
  ``scripts/synth_archive.py`` as the harvester would have left it: ``plan``, and ``run`` for
  ``run_s`` seconds on a hard-linked copy (the same figures, plus what it reused: its
  ``plan_ready`` must reuse exactly the windows the archive holds, no day file may be found
  damaged, and every window the run fetched must start in a day the archive holds nothing of);
- the FINISHED archive: ``status``, ``verify`` (exit 0: no mismatch) and ``report``.

Targets at 1,000 devices x 5 years (16.9 M windows, 1.4 M device-days): plan ≤ 300 MB and
≤ 20 CPU-s, run ≤ 300 MB over its first minute, discovered → first request ≤ 5 s (empty and
half-done); status, verify and report of the finished archive ≤ 300 MB each. A command still
running after ``--timeout-s`` (600) is interrupted and marked ``timed_out``.

Building the archives takes minutes (``synth_archive``); ``--keep DIR`` keeps them in DIR (and
reuses them when DIR holds a build of the same fleet and partition), ``--reuse DIR`` insists on
reusing one. A reused archive's checkpoint is opened once with the current code first, so that
it is in the format this code writes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import measured_child  # noqa: E402  -- a sibling script, importable once scripts/ is on the path
import synth_archive  # noqa: E402  -- idem

from tests.support.simproc import SimulatorProcess  # noqa: E402  -- needs ROOT on the path

EMAIL, PASSWORD = "demo@example.com", "demo"
#: A command still running after this long is interrupted (and reported as such).
TIMEOUT_S = 600.0
MB = 300.0
#: How often a measured command is checked for its end (and its log for an awaited event).
POLL_S = 0.05


def _measured(
    argv: list[str],
    stop_after_s: float | None = None,
    timeout_s: float | None = None,
    *,
    stop_after_event: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Run ``python -m harvester *argv``; its CPU seconds, peak RSS (MB) and stderr (the
    figures carry the first and last lines of stdout under ``stdout``).

    Interrupted ``stop_after_s`` seconds after its start, or with ``stop_after_event`` that
    many seconds after its log first names that event (the wait for the event bounded by
    ``timeout_s``, else ``TIMEOUT_S``: still waiting then, it is marked ``timed_out``). An
    interrupted command has 60 s to drain and save its checkpoint, then is killed (its figures
    up to then are reported). It runs through ``measured_child``'s launcher, in a process group
    of its own that is killed whole on the way out."""
    env = dict(os.environ, SENSIT_EMAIL=EMAIL, SENSIT_PASSWORD=PASSWORD)
    limit = stop_after_s if stop_after_s is not None else timeout_s
    awaited: bytes | None = None
    if stop_after_event is not None:
        if stop_after_s is None:
            raise ValueError("stop_after_event counts stop_after_s from the event")
        awaited, limit = f'"{stop_after_event}"'.encode(), timeout_s or TIMEOUT_S
    timed_out = False
    with (
        tempfile.TemporaryFile(mode="w+") as err,
        tempfile.TemporaryFile(mode="w+") as out,
        # Through a launcher: the command's peak RSS is its own, not this process's.
        measured_child.Measured(
            [sys.executable, "-m", "harvester", *argv], stdout=out, stderr=err, env=env, cwd=ROOT
        ) as process,
    ):
        started = time.monotonic()
        deadline = None if limit is None else started + limit
        scanned = 0
        usage = process.poll() if deadline is not None else process.wait()
        while usage is None and deadline is not None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            if awaited is not None and stop_after_s is not None:
                seen, scanned = _logged(err.fileno(), awaited, scanned)
                if seen:
                    awaited, deadline = None, time.monotonic() + stop_after_s
            usage = process.poll()
        if usage is None:
            timed_out = stop_after_s is None or awaited is not None
            process.interrupt(signal.SIGINT)
            usage = process.wait(timeout_s=60)  # to drain and save its checkpoint
            if usage is None:
                process.kill()
                usage = process.wait(timeout_s=60)
            if usage is None:
                raise RuntimeError(f"harvester {argv[0]} could not be stopped (its group killed)")
        err.seek(0)
        log = err.read()
        out.seek(0)
        printed = out.read().strip().splitlines()
    figures = {
        "exit": usage.exit,
        "wall_s": round(time.monotonic() - started, 2),
        "cpu_s": round(usage.cpu_s, 2),
        "peak_rss_mb": round(usage.peak_rss_mb, 1),
        "stdout": printed[:4] + printed[4:][-3:],
    }
    if timed_out:
        figures["timed_out"] = True
    return figures, log


def _logged(fd: int, needle: bytes, offset: int) -> tuple[bool, int]:
    """Whether the whole lines written to the log file ``fd`` from ``offset`` on hold
    ``needle``, and the offset after them (``pread``: the writer's file position is shared)."""
    chunk = os.pread(fd, max(0, os.fstat(fd).st_size - offset), offset)
    end = chunk.rfind(b"\n") + 1
    return needle in chunk[:end], offset + end


def _events(log: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            found.append(event)
    return found


def _event_times(log: str) -> dict[str, float]:
    times: dict[str, float] = {}
    for event in _events(log):
        if "timestamp" in event:
            stamp = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            times.setdefault(event["event"], stamp.timestamp())
    return times


def _gap(log: str) -> float | None:
    """Seconds from ``discovered`` to ``plan_ready``; None when the log lacks either (the run
    was stopped before its plan was ready)."""
    events = _event_times(log)
    if "plan_ready" not in events or "discovered" not in events:
        return None
    return round(events["plan_ready"] - events["discovered"], 2)


def simulator(devices: int, days: int) -> SimulatorProcess:
    """The fleet's simulator (hourly data), as ``measure`` and ``measure_archives`` start it."""
    return SimulatorProcess(devices=devices, days=days, cadence_s=3600, timeout_s=300)


@contextlib.contextmanager
def _served(devices: int, days: int, base_url: str | None) -> Iterator[str]:
    """``base_url`` (a ``simulator(devices, days)`` the caller runs), else a new one's URL."""
    if base_url is not None:
        yield base_url
        return
    with simulator(devices, days) as sim:
        yield sim.url


def measure(
    devices: int,
    days: int,
    run_s: float,
    *,
    run_from: str | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Plan and start a harvest of the fleet into an empty archive; the figures of each. The
    run is interrupted ``run_s`` seconds after its start, or after its log event ``run_from``
    (``plan_ready``: a small fleet's run then reaches its pool however loaded the machine).
    Against ``base_url``, a running ``simulator(devices, days)``, else one started here."""
    with (
        _served(devices, days, base_url) as url,
        tempfile.TemporaryDirectory() as work,
    ):
        common = ["--base-url", url, "--log-format", "json", "--rps", "100000"]
        plan, _ = _measured(["plan", *common, "--out", f"{work}/plan"])
        run, log = _measured(
            ["run", *common, "--out", f"{work}/run", "--concurrency", "32"],
            stop_after_s=run_s,
            stop_after_event=run_from,
        )
        run["discovered_to_first_request_s"] = _gap(log)
    return {"devices": devices, "days": days, "plan": plan, "run": run}


def _refetched(built: synth_archive.Built, archive: Path) -> dict[str, Any]:
    """What the run recorded in its checkpoint segments (JSON Lines: a header naming the
    devices, then one entry a line, see ``checkpoint/format.py``): how many windows, the first,
    and how many start before their device's first unfinished day (fetched again: must be 0)."""
    from harvester.archive.layout import CHECKPOINT_PREFIX, parse_segment_name

    fetched: list[tuple[str, int]] = []
    segments = 0
    for path in sorted((archive / CHECKPOINT_PREFIX).iterdir()):
        if parse_segment_name(path.name) is None:
            continue
        segments += 1
        header, *entries = path.read_bytes().splitlines()
        devices = json.loads(header)["devices"]
        for line in entries:
            entry = json.loads(line)
            if entry.get("k") == "fin":
                fetched.append((devices[entry["d"]], entry["s"]))
    limit = built.first_unfinished_ms
    again = sum(start < limit.get(uuid, 1 << 62) for uuid, start in fetched)
    first = min(fetched, key=lambda f: f[1], default=None)
    return {
        "segments": segments,
        "windows_fetched": len(fetched),
        "windows_fetched_again": again,
        "first_fetched": None
        if first is None
        else f"{first[0]} {dt.datetime.fromtimestamp(first[1] / 1000, dt.UTC):%Y-%m-%d %H:%M}",
    }


def archives(
    url: str, devices: int, days: int, partition: str, root: Path, *, reuse_only: bool = False
) -> synth_archive.Built:
    """The archives kept in ``root`` (their checkpoints reopened with this code), or built
    there. In a process of its own: a child forked from a process of several GB reports that
    as its own peak RSS (Linux carries ``ru_maxrss`` across fork and exec)."""
    if reuse_only and synth_archive.load(root, devices, days, partition) is None:
        raise SystemExit(f"--reuse {root}: no archive of {devices} x {days} ({partition}) there")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "synth_archive.py"),
            *("--out", str(root), "--devices", str(devices), "--days", str(days)),
            *("--partition", partition, "--base-url", url, "--reuse"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    built = synth_archive.load(root, devices, days, partition)
    assert built is not None
    return built


def measure_archives(
    devices: int,
    days: int,
    run_s: float,
    partition: str = "month",
    keep: Path | None = None,
    *,
    reuse_only: bool = False,
    timeout_s: float = TIMEOUT_S,
    run_from: str | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Resume a half-done archive of the fleet (plan, run) and inspect a finished one (status,
    verify, report); the figures of each, and of building them. The run is interrupted, and
    the simulator chosen, as in ``measure``."""
    if keep is not None:
        # The run's hard-linked copy goes beside the kept archives: on the same file system.
        keep.parent.mkdir(parents=True, exist_ok=True)
    with (
        _served(devices, days, base_url) as url,
        tempfile.TemporaryDirectory(dir=keep.parent if keep else None) as work,
    ):
        root = keep if keep is not None else Path(work) / "archive"
        started = time.monotonic()
        built = archives(url, devices, days, partition, root, reuse_only=reuse_only)
        prepared_s = round(time.monotonic() - started, 1)
        common = ["--base-url", url, "--log-format", "json", "--rps", "100000"]
        plan, _ = _measured(["plan", *common, "--out", str(built.half)], timeout_s=timeout_s)
        done = re.search(r"\((\d+) already done\)", "\n".join(plan["stdout"]))
        plan["windows_reused"] = int(done[1]) if done else None
        plan["reused_all_finished"] = plan["windows_reused"] == built.half_windows
        copy = Path(work) / "run"
        synth_archive.clone(built.half, copy)
        run, log = _measured(
            ["run", *common, "--out", str(copy), "--concurrency", "32"],
            stop_after_s=run_s,
            timeout_s=timeout_s,
            stop_after_event=run_from,
        )
        run["discovered_to_first_request_s"] = _gap(log)
        ready = next((e for e in _events(log) if e["event"] == "plan_ready"), {})
        run["windows_reused"] = ready.get("reused")
        run["reused_all_finished"] = ready.get("reused") == built.half_windows
        run["day_files_damaged"] = sum(e["event"] == "day_file_damaged" for e in _events(log))
        run.update(_refetched(built, copy))
        shutil.rmtree(copy)
        status, _ = _measured(["status", "--out", str(built.finished)], timeout_s=timeout_s)
        verify, _ = _measured(
            ["verify", *common, "--out", str(built.finished)], timeout_s=timeout_s
        )
        report, _ = _measured(
            ["report", "--out", str(built.finished), "--output-dir", f"{work}/report"],
            timeout_s=timeout_s,
        )
    return {
        "devices": devices,
        "days": days,
        "partition": partition,
        "archive": {
            "device_days": built.device_days,
            "windows": built.windows,
            "half_windows": built.half_windows,
            "files": built.files,
            "half_files": built.half_files,
            "build_s": built.seconds,
            "prepared_s": prepared_s,
        },
        "half": {"plan": plan, "run": run},
        "finished": {"status": status, "verify": verify, "report": report},
    }


def table_rows(
    empty: dict[str, Any] | None, resumed: dict[str, Any] | None
) -> list[tuple[str, float | None, float | None]]:
    """(measure, value, target or None) of each figure the table shows."""
    rows: list[tuple[str, float | None, float | None]] = []
    if empty is not None:
        rows += [
            ("empty: plan peak RSS MB", empty["plan"]["peak_rss_mb"], MB),
            ("empty: plan CPU s", empty["plan"]["cpu_s"], 20.0),
            ("empty: run peak RSS MB (first minute)", empty["run"]["peak_rss_mb"], MB),
            (
                "empty: discovered → first request s",
                empty["run"]["discovered_to_first_request_s"],
                5.0,
            ),
        ]
    if resumed is not None:
        half, done = resumed["half"], resumed["finished"]
        rows += [
            ("half-done: plan peak RSS MB", half["plan"]["peak_rss_mb"], MB),
            ("half-done: plan CPU s", half["plan"]["cpu_s"], 20.0),
            ("half-done: run peak RSS MB (first minute)", half["run"]["peak_rss_mb"], MB),
            ("half-done: run CPU s (first minute)", half["run"]["cpu_s"], None),
            (
                "half-done: discovered → first request s",
                half["run"]["discovered_to_first_request_s"],
                5.0,
            ),
            ("half-done: windows fetched again", half["run"]["windows_fetched_again"], 0.0),
        ]
        for name in ("status", "verify", "report"):
            rows.append((f"finished: {name} peak RSS MB", done[name]["peak_rss_mb"], MB))
            rows.append((f"finished: {name} CPU s", done[name]["cpu_s"], None))
            rows.append((f"finished: {name} wall s", done[name]["wall_s"], None))
    return rows


def print_table(empty: dict[str, Any] | None, resumed: dict[str, Any] | None) -> None:
    """The figures beside their targets; a figure that could not be measured (the run was
    stopped before its plan was ready) is shown as ``never`` and misses its target."""
    rows = table_rows(empty, resumed)
    width = max(len(label) for label, _, _ in rows)
    print(f"{'measure':<{width}} {'value':>10}  target    met")
    for label, value, target in rows:
        met = "" if target is None else ("yes" if value is not None and value <= target else "NO")
        shown = "" if target is None else f"<= {target:g}"
        figure = "never" if value is None else f"{value:.2f}"
        print(f"{label:<{width}} {figure:>10}  {shown:<9} {met}")
    if resumed is not None:
        half, done = resumed["half"], resumed["finished"]
        notes = [
            f"half-done plan reused all finished windows: {half['plan']['reused_all_finished']}"
            f" ({half['plan']['windows_reused']} of {resumed['archive']['half_windows']})",
            f"half-done run reused all finished windows: {half['run']['reused_all_finished']}"
            f" ({half['run']['windows_reused']} of {resumed['archive']['half_windows']}),"
            f" fetched {half['run']['windows_fetched']} windows,"
            f" the first {half['run']['first_fetched']},"
            f" damaged day files {half['run']['day_files_damaged']}",
            f"finished verify exit {done['verify']['exit']} (0: no mismatch)",
        ]
        for name, figures in [("plan", half["plan"]), *done.items()]:
            if figures.get("timed_out"):
                notes.append(f"{name} was still running after its time limit and was stopped")
        print("\n".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1826)
    parser.add_argument("--run-s", type=float, default=60.0)
    parser.add_argument("--partition", choices=("month", "day"), default="month")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--keep", type=Path, help="build the archives here (reused if they match)")
    where.add_argument("--reuse", type=Path, help="reuse the archives kept here")
    parser.add_argument("--timeout-s", type=float, default=TIMEOUT_S)
    parser.add_argument("--skip-empty", action="store_true", help="no empty-archive figures")
    parser.add_argument("--skip-archives", action="store_true", help="empty-archive figures only")
    args = parser.parse_args()
    empty = None if args.skip_empty else measure(args.devices, args.days, args.run_s)
    resumed = None
    if not args.skip_archives:
        resumed = measure_archives(
            args.devices,
            args.days,
            args.run_s,
            args.partition,
            args.keep or args.reuse,
            reuse_only=args.reuse is not None,
            timeout_s=args.timeout_s,
        )
    print(json.dumps({"empty": empty, "archives": resumed}, indent=2))
    print_table(empty, resumed)


if __name__ == "__main__":
    main()
