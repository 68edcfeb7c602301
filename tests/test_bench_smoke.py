"""``scripts/bench.py --smoke`` keeps working: every scenario yields numbers (targets not judged).

The benchmark's targets are judged by a person reading ``make bench`` on a quiet machine; in
CI the machine is shared and noisy, so this test checks only that the harness runs end to end,
that every figure it reports is a finite number, and that the scale scenario's commands did
what its figures stand for (no timing in that).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The smoke starts a dozen processes; on a loaded 2-core machine that takes up to a minute.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("1 rate-limited", "2 latency-bound", "3 CPU-bound", "4 memory", "5 loop lag")
SCENARIOS += ("6 checkpoint", "7 scale", "pacers")


def test_smoke_run_reports_a_number_for_every_scenario(tmp_path: Path) -> None:
    """The smoke run exits 0, prints a table and writes JSON with finite figures per scenario."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--smoke", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scenario" in done.stdout
    [written] = list(tmp_path.glob("bench-smoke-*.json"))
    document = json.loads(written.read_text())
    table = document["table"]
    seen = {row["scenario"] for row in table}
    assert seen == set(SCENARIOS)
    for row in table:
        assert row["values"], row
        assert all(math.isfinite(value) for value in row["values"]), row
    targets = [row for row in table if row["target"]]
    assert len(targets) >= 10
    _check_scale(document["runs"]["scale"])


def _check_scale(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Scenario 7's commands did their work, not just yield figures: both runs reached their
    pool (the smoke stops them after ``plan_ready``), the resumed one reused every finished
    window and fetched none of them again, and the finished archive passed status, verify and
    report, in month files and in day files."""
    [empty], [month], [day] = runs.values()
    assert empty["plan"]["exit"] == 0, empty["plan"]
    assert empty["run"]["discovered_to_first_request_s"] is not None, empty["run"]
    for resumed in (month, day):
        _check_resumed(resumed)


def _check_resumed(resumed: dict[str, Any]) -> None:
    plan, run = resumed["half"]["plan"], resumed["half"]["run"]
    assert plan["exit"] == 0, plan
    assert plan["reused_all_finished"], plan
    assert run["exit"] in (0, 130), run
    assert run["discovered_to_first_request_s"] is not None, run
    assert run["reused_all_finished"], run
    assert run["windows_fetched"] > 0, run
    assert run["windows_fetched_again"] == 0, run
    assert run["day_files_damaged"] == 0, run
    for command, figures in resumed["finished"].items():
        assert figures["exit"] == 0, (command, figures)
