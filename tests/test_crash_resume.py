"""SIGKILL at deterministic points and at seeded random times, resume, compare: nothing lost,
nothing doubled, no temporary file where readers look.

A CI sample of what scripts/soak.py does hundreds of times. The harvester runs as a
subprocess (``python -m harvester run``) against a simulator with latency, faults and short
tokens; the reference is the plain client on a fault-free simulator of the same seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.crash_harness import (
    CRASH_POINTS,
    EMAIL,
    PASSWORD,
    archive_problems,
    run_harvester,
    run_until_complete,
)
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory

pytestmark = pytest.mark.slow

# 3 devices x 3 days: ~90 windows, paced to a few seconds a run so that kills land mid-run.
FLEET = {"seed": 21, "devices": 3, "days": 3, "cadence_s": 600}
RUN = ("--rps", "50", "--concurrency", "4")
# Every fault but "slow", whose read time-outs would only make the sample longer.
FAULTS = {"fault_rate": 0.15, "fault_kinds": "500,502,503,reset,truncated,nodata"}


# A dozen kills and resumes: ~37 s on a loaded 2-core machine, too near the default 60 s.
@pytest.mark.timeout(180)
def test_kill_at_every_crash_point_then_resume_is_exact(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """Each fault-hook point SIGKILLs a run; the resumed archive equals the plain client's."""
    sim = simulator(latency_ms=15, token_ttl_s=3, **FAULTS, **FLEET)
    out = tmp_path / "out"
    order = ["fetched:25", "day_written:2", "write_day:2", "torn_day:2:torn", "planning:1"]
    order += ["torn_segment:2:torn", "compacted:1", "write_segment:2"]
    assert {spec.split(":")[0] for spec in order} == set(CRASH_POINTS)
    killed = []
    for spec in order:
        outcome = run_harvester(sim.url, out, *RUN, crash_at=spec)
        assert outcome.returncode in (-9, 0, 1), outcome.stderr[-2000:]
        killed.append(outcome.killed)
    # Most points are reached while work remains; a late one may find the archive complete.
    assert sum(killed) >= len(order) - 2, killed
    final = run_until_complete(sim.url, out, RUN)
    assert final[-1].returncode == 0, final[-1].stderr[-2000:]
    expected = collect_all(simulator(**FLEET).url, EMAIL, PASSWORD)
    assert archive_problems(out, expected) == []


def test_seeded_random_kills_with_a_moving_clock_then_resume_is_exact(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """SIGKILLs at seeded random times, the present moving mid-way: the archive is exact."""
    rng = random.Random(4)
    sim = simulator(latency_ms=25, token_ttl_s=2, **FAULTS, **FLEET)
    out = tmp_path / "out"
    kills = 0
    for round_number in range(4):
        if round_number == 2:
            sim.set_clock("2024-01-03T21:30:00Z")
        delay = rng.uniform(1.0, 3.0)  # the interpreter and pyarrow take ~1 s to start
        outcome = run_harvester(sim.url, out, *RUN, kill_after_s=delay)
        assert outcome.returncode in (-9, 0, 1), outcome.stderr[-2000:]
        kills += outcome.killed
    assert kills >= 2
    final = run_until_complete(sim.url, out, RUN)
    assert final[-1].returncode == 0, final[-1].stderr[-2000:]
    clean = simulator(**FLEET)
    clean.set_clock("2024-01-03T21:30:00Z")
    assert archive_problems(out, collect_all(clean.url, EMAIL, PASSWORD)) == []
