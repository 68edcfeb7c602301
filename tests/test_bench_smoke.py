"""``scripts/bench.py --smoke`` keeps working: every scenario yields numbers (targets not judged).

The benchmark's targets are judged by a person reading ``make bench`` on a quiet machine; in
CI the machine is shared and noisy, so this test checks only that the harness runs end to end
and that every figure it reports is a finite number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

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
    table = json.loads(written.read_text())["table"]
    seen = {row["scenario"] for row in table}
    assert seen == set(SCENARIOS)
    for row in table:
        assert row["values"], row
        assert all(math.isfinite(value) for value in row["values"]), row
    targets = [row for row in table if row["target"]]
    assert len(targets) >= 10
