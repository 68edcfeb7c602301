"""Run ``python -m harvester run`` as a subprocess, kill it on cue, and judge the archive.

Shared by tests/test_crash_resume.py (a CI sample) and scripts/soak.py (hundreds of kills).
A kill comes either from a fault hook (``HARVESTER_CRASH_AT``, see harvester/crashpoints.py:
the process SIGKILLs itself at a named point, so a failure reproduces exactly) or from this
side after a seeded delay.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

EMAIL, PASSWORD = "demo@example.com", "demo"

#: Fault-hook points and the largest n worth drawing for each, for a fleet of 16+ device-days
#: fetched at a pace that takes a few seconds (a hook that is never reached lets the run end).
CRASH_POINTS: dict[str, int] = {
    "planning": 1,
    "fetched": 120,
    "day_written": 12,
    "write_day": 12,
    "write_segment": 3,
    "torn_segment": 3,
    "torn_day": 12,
    "compacted": 1,
}


@dataclass(frozen=True)
class RunOutcome:
    """How one harvester process ended: its exit code (-9 when SIGKILLed) and its stderr."""

    returncode: int
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def harvester_command(url: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harvester",
        "run",
        "--base-url",
        url,
        "--email",
        EMAIL,
        "--password",
        PASSWORD,
        "--out",
        str(out),
        "--log-format",
        "json",
        "--read-timeout-s",
        "2",
        *extra,
    ]


def run_harvester(
    url: str,
    out: Path,
    *extra: str,
    crash_at: str = "",
    kill_after_s: float | None = None,
    timeout_s: float = 120.0,
) -> RunOutcome:
    """One run; ``crash_at`` arms a fault hook, ``kill_after_s`` SIGKILLs it from outside."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("HARVESTER_CRASH_AT", None)
    if crash_at:
        env["HARVESTER_CRASH_AT"] = crash_at
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as err:
        process = subprocess.Popen(
            harvester_command(url, out, *extra),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            env=env,
        )
        try:
            process.wait(timeout=kill_after_s if kill_after_s is not None else timeout_s)
        except subprocess.TimeoutExpired:
            if kill_after_s is None:
                process.kill()
                process.wait()
                raise
            process.send_signal(signal.SIGKILL)
            process.wait()
        err.seek(0)
        return RunOutcome(process.returncode, err.read(), time.monotonic() - started)


def random_kill(rng: random.Random, max_delay_s: float) -> tuple[str, float | None]:
    """A seeded choice: a fault-hook spec (and no delay) or a delay for an outside SIGKILL."""
    if rng.random() < 0.6:
        point = rng.choice(sorted(CRASH_POINTS))
        n = rng.randint(1, CRASH_POINTS[point])
        action = "torn" if point.startswith("torn_") else "kill"
        return f"{point}:{n}:{action}", None
    return "", rng.uniform(0.2, max_delay_s)


def archive_problems(out: Path, expected: dict[str, dict[str, Any]]) -> list[str]:
    """Everything wrong with the archive against the reference records (empty when exact)."""
    problems: list[str] = []
    visible = sorted(out.rglob("*.parquet"))
    strays = [p for p in visible if p.name.startswith(".") or ".tmp-" in p.name]
    if strays:
        problems.append(f"temporary files visible to readers: {strays[:3]}")
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table(columns=["_id", "date"])
    ids = table.column("_id").to_pylist()
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} records stored twice")
    missing = set(expected) - set(ids)
    extra = set(ids) - set(expected)
    if missing:
        problems.append(f"{len(missing)} records missing, e.g. {sorted(missing)[:2]}")
    if extra:
        problems.append(f"{len(extra)} records nobody served, e.g. {sorted(extra)[:2]}")
    stored = dict(zip(ids, table.column("date").to_pylist(), strict=True))
    wrong_dates = [
        record_id
        for record_id, record in expected.items()
        if record_id in stored
        and stored[record_id] != dt.datetime.fromisoformat(record["date"].replace("Z", "+00:00"))
    ]
    if wrong_dates:
        problems.append(f"{len(wrong_dates)} records with a wrong date")
    return problems


def run_until_complete(
    url: str, out: Path, extra: Sequence[str], attempts: int = 4
) -> list[RunOutcome]:
    """Unarmed runs until one exits 0 (a run may exit 1 naming windows the faults beat)."""
    outcomes: list[RunOutcome] = []
    for _ in range(attempts):
        outcomes.append(run_harvester(url, out, *extra))
        if outcomes[-1].returncode == 0:
            break
    return outcomes


class LiveRun:
    """A harvester run in the background whose JSON log lines can be waited for."""

    def __init__(self, url: str, out: Path, *extra: str, log_path: Path) -> None:
        self.log_path = log_path
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("HARVESTER_CRASH_AT", None)
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                harvester_command(url, out, *extra), stdout=log, stderr=log, text=True, env=env
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, event: str, timeout_s: float = 30.0) -> None:
        """Block until the log holds ``"event":"<event>"`` (raises if the run ends first)."""
        deadline = time.monotonic() + timeout_s
        needle = f'"event":"{event}"'
        while needle not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {event} event; the run said:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
