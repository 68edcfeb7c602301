"""The long soak: hundreds of SIGKILLs at seeded points and times, then an exact compare.

    .venv/bin/python scripts/soak.py [--rounds 20] [--kills 15] [--seed 1]

Each round starts a simulator with latency, every kind of fault, short tokens and a rate
limit, and a fresh archive. It then runs ``harvester run`` ``--kills`` times, each run killed
either by a fault hook (``HARVESTER_CRASH_AT``, a seeded point and count) or by SIGKILL after a
seeded delay, moving the simulated present forward now and then so later runs have new data
and open windows to re-fetch. Finally it runs until a run exits 0 and compares the archive with
what the plain client collects from a fault-free simulator of the same seed and present.
Prints one line per round and a report; exits 1 if any round found a problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.crash_harness import (  # after the sys.path insert: needs the repository root
    EMAIL,
    PASSWORD,
    archive_problems,
    random_kill,
    run_harvester,
    run_until_complete,
)
from tests.support.plain_client import collect_all
from tests.support.simproc import SimulatorProcess

RUN = ("--rps", "60", "--concurrency", "4")
CLOCK_STEP = dt.timedelta(hours=3)


@dataclass
class RoundResult:
    kills: int = 0
    hook: int = 0
    timer: int = 0
    runs: int = 0
    records: int = 0
    faults: int = 0
    problems: list[str] = field(default_factory=list)


def soak_round(seed: int, kills: int, rng: random.Random, folder: Path) -> RoundResult:
    fleet = {"seed": seed, "devices": 4, "days": 4, "cadence_s": 600}
    noisy = {"latency_ms": 20, "fault_rate": 0.2, "token_ttl_s": 3, "rate_limit": 40}
    now = dt.datetime(2024, 1, 4, 14, tzinfo=dt.UTC)
    out = folder / f"round-{seed}"
    result = RoundResult()
    with SimulatorProcess(**noisy, **fleet) as sim:
        for number in range(kills):
            if number and number % 4 == 0:
                now += CLOCK_STEP
                sim.set_clock(now.isoformat())
            spec, delay = random_kill(rng, max_delay_s=4.0)
            outcome = run_harvester(sim.url, out, *RUN, crash_at=spec, kill_after_s=delay)
            result.runs += 1
            if outcome.returncode not in (-9, 0, 1):
                raise SystemExit(f"round {seed}: run exited {outcome.returncode}\n{outcome.stderr}")
            if outcome.killed:
                result.kills += 1
                result.hook += bool(spec)
                result.timer += not spec
        final = run_until_complete(sim.url, out, RUN, attempts=6)
        result.runs += len(final)
        result.faults = sum(sim.stats()["faults_injected"].values())
    with SimulatorProcess(**fleet) as clean:
        clean.set_clock(now.isoformat())
        expected = collect_all(clean.url, EMAIL, PASSWORD)
    result.records = len(expected)
    result.problems = archive_problems(out, expected)
    if final[-1].returncode != 0:
        result.problems.append(f"last run exited {final[-1].returncode}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kills", type=int, default=15, help="killed runs tried per round")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    totals = RoundResult()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        for number in range(args.rounds):
            result = soak_round(args.seed * 1000 + number, args.kills, rng, Path(folder))
            for name in ("kills", "hook", "timer", "runs", "records", "faults"):
                setattr(totals, name, getattr(totals, name) + getattr(result, name))
            failed += bool(result.problems)
            print(
                f"round {number:3d}: {result.kills:3d} kills ({result.hook} by hook, "
                f"{result.timer} by timer), {result.runs:3d} runs, "
                f"{result.records:6d} records compared: {'; '.join(result.problems) or 'exact'}",
                flush=True,
            )
    print(
        f"\nsoak: {args.rounds} rounds, {totals.kills} SIGKILLs ({totals.hook} at fault-hook "
        f"points, {totals.timer} at seeded times), {totals.runs} runs (each one a resume), "
        f"{totals.records:,} records compared, {totals.faults} server faults injected, "
        f"{failed} rounds with problems, {time.monotonic() - started:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
