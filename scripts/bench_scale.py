"""Issue 13's scale scenario: a large fleet planned and started in flat memory.

    .venv/bin/python scripts/bench_scale.py [--devices 1000] [--days 1826] [--run-s 60]

A simulator of ``devices`` devices with ``days`` days of hourly data each; then, each in a fresh
process whose CPU time and peak RSS are its own (``os.wait4``): ``harvester plan``, and
``harvester run`` interrupted after ``run_s`` seconds (its first minutes). From the run's JSON
log, the seconds from the end of discovery (the last available-dates answer, ``discovered``)
to the pool's start (``plan_ready``, after which the first records request goes out at once).
Targets at 1,000 devices x 5 years: plan ≤ 300 MB and ≤ 20 CPU-s, run ≤ 300 MB, gap ≤ 5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tests.support.simproc import SimulatorProcess  # noqa: E402  -- needs ROOT on the path

EMAIL, PASSWORD = "demo@example.com", "demo"


def _measured(argv: list[str], stop_after_s: float | None = None) -> tuple[dict[str, Any], str]:
    """Run ``python -m harvester *argv``; its CPU seconds, peak RSS (MB) and stderr."""
    env = dict(os.environ, SENSIT_EMAIL=EMAIL, SENSIT_PASSWORD=PASSWORD)
    with tempfile.TemporaryFile(mode="w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "harvester", *argv],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=ROOT,
        )
        started = time.monotonic()
        if stop_after_s is not None:
            while process.poll() is None and time.monotonic() - started < stop_after_s:
                time.sleep(0.2)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        log = err.read()
    figures = {
        "exit": process.returncode,
        "wall_s": round(time.monotonic() - started, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    return figures, log


def _event_times(log: str) -> dict[str, float]:
    times: dict[str, float] = {}
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event and "timestamp" in event:
            stamp = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            times.setdefault(event["event"], stamp.timestamp())
    return times


def measure(devices: int, days: int, run_s: float) -> dict[str, Any]:
    """Plan and start a harvest of the fleet; the figures of each."""
    with (
        SimulatorProcess(devices=devices, days=days, cadence_s=3600, timeout_s=300) as sim,
        tempfile.TemporaryDirectory() as work,
    ):
        common = ["--base-url", sim.url, "--log-format", "json", "--rps", "100000"]
        plan, _ = _measured(["plan", *common, "--out", f"{work}/plan"])
        run, log = _measured(
            ["run", *common, "--out", f"{work}/run", "--concurrency", "32"], stop_after_s=run_s
        )
        events = _event_times(log)
        gap = events.get("plan_ready", 0.0) - events.get("discovered", 0.0)
        run["discovered_to_first_request_s"] = round(gap, 2)
    return {"devices": devices, "days": days, "plan": plan, "run": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1826)
    parser.add_argument("--run-s", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.devices, args.days, args.run_s), indent=2))


if __name__ == "__main__":
    main()
