"""SIGINT/SIGTERM from outside: the first drains and saves, exit 130; a second quits at once;
the next run still ends complete and exact."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.crash_harness import (
    EMAIL,
    PASSWORD,
    LiveRun,
    archive_problems,
    run_until_complete,
)
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory

pytestmark = pytest.mark.slow

FLEET = {"seed": 31, "devices": 3, "days": 3, "cadence_s": 600}
# ~100 windows at 15 requests/s: several seconds of run to interrupt.
RUN = ("--rps", "15", "--concurrency", "4")
RESUME = ("--rps", "300", "--concurrency", "8")


@pytest.fixture
def runs() -> Iterator[list[LiveRun]]:
    """Background runs, killed at teardown if still alive."""
    started: list[LiveRun] = []
    yield started
    for run in started:
        run.stop()


def manifests(out: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((out / "_harvest/runs").glob("*.json"))]


def segments(out: Path) -> list[Path]:
    return sorted((out / "_harvest/checkpoint").glob("seg-*.jsonl"))


def test_first_signal_drains_saves_and_exits_130(
    simulator: SimFactory, tmp_path: Path, runs: list[LiveRun]
) -> None:
    """One SIGINT mid-run: exit 130, a checkpoint and an 'interrupted' manifest; resume exact."""
    sim = simulator(latency_ms=100, **FLEET)
    out = tmp_path / "out"
    run = LiveRun(sim.url, out, *RUN, log_path=tmp_path / "run.log")
    runs.append(run)
    run.wait_for("plan_ready")
    run.wait_for("schema_widened")  # a first day is written: there is something to save
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=20) == 130, run.log()[-3000:]
    log = run.log()
    assert '"event":"stopping"' in log
    assert "Traceback" not in log
    assert "interrupted" in log.splitlines()[-1]
    (manifest,) = manifests(out)
    assert manifest["interrupted"] is True
    assert 0 < int(str(manifest["windows_done"])) < int(str(manifest["windows_planned"]))
    # The truth about what is left: every window to fetch not yet done or failed, queued
    # ones included (not only the few in flight when the signal came).
    done, failed, left, total = (
        int(str(manifest[k]))
        for k in ("windows_done", "windows_failed", "windows_left", "windows_total")
    )
    assert done + failed + left == total
    assert left > 4  # more than the --concurrency windows that were in flight
    assert f"{left} left for next run" in log
    assert segments(out), "the drained windows were not checkpointed"
    final = run_until_complete(sim.url, out, RESUME)
    assert final[-1].returncode == 0, final[-1].stderr[-2000:]
    assert archive_problems(out, collect_all(simulator(**FLEET).url, EMAIL, PASSWORD)) == []


def test_second_signal_exits_at_once_and_next_run_is_exact(
    simulator: SimFactory, tmp_path: Path, runs: list[LiveRun]
) -> None:
    """SIGTERM starts the drain, a SIGINT then skips it (exit 130, no manifest written); the
    next run is exact."""
    sim = simulator(latency_ms=200, **FLEET)
    out = tmp_path / "out"
    run = LiveRun(sim.url, out, *RUN, log_path=tmp_path / "run.log")
    runs.append(run)
    run.wait_for("plan_ready")
    run.process.send_signal(signal.SIGTERM)
    run.wait_for("stopping")
    assert '"signal":"SIGTERM"' in run.log()
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=20) == 130, run.log()[-3000:]
    assert '"event":"stopping_now"' in run.log()
    # The drain would end in a manifest; quitting at once writes none.
    assert manifests(out) == []
    final = run_until_complete(sim.url, out, RESUME)
    assert final[-1].returncode == 0, final[-1].stderr[-2000:]
    assert archive_problems(out, collect_all(simulator(**FLEET).url, EMAIL, PASSWORD)) == []
