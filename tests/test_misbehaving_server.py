"""A server at its worst: a third of data calls failing, in every way the simulator offers, a
rate limit far below --rps, tokens living seconds. Each run completes, or exits 1 naming the
windows it gave up on, and the next run completes them; the archive is exact."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.crash_harness import EMAIL, PASSWORD, archive_problems
from tests.support.inproc import harvest, record_requests
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory

pytestmark = pytest.mark.slow

SUMMARY = re.compile(r"requests (\d+) \((\d+) retries, (\d+) rate-limited, (\d+) sign-ins\)")
FAILED = re.compile(r"^FAILED   device \w+ \S+ \.\. \S+ after \d+ attempts: .+$", re.MULTILINE)


def run_until_done(url: str, out: Path, *extra: str, runs: int = 4) -> list[tuple[int, str]]:
    """Runs until one exits 0; an exit-1 run must name each window it gave up on."""
    results: list[tuple[int, str]] = []
    for _ in range(runs):
        code, stdout, stderr = harvest(url, out, "--read-timeout-s", "1", *extra)
        results.append((code, stdout))
        assert code in (0, 1), stderr[-2000:]
        if code == 0:
            return results
        failed = int(re.search(r"(\d+) failed", stdout).group(1))  # type: ignore[union-attr]
        assert failed > 0
        assert len(FAILED.findall(stdout)) == failed, stdout
        assert "run again to retry the failed windows" in stdout
    raise AssertionError(f"no run completed: {results}")


def summed(results: list[tuple[int, str]]) -> list[int]:
    """requests, retries, 429s, sign-ins over all runs, from the printed summaries."""
    rows = [[int(n) for n in SUMMARY.search(stdout).groups()] for _, stdout in results]  # type: ignore[union-attr]
    return [sum(column) for column in zip(*rows, strict=True)]


def test_every_fault_kind_a_low_rate_limit_and_short_tokens(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """35 % faults of all kinds, 15 req/s limit vs --rps 100, 3 s tokens; a tight attempt
    budget first (exit 1 naming windows), then the default: complete and exact."""
    fleet = {"seed": 71, "devices": 3, "days": 2, "cadence_s": 600}
    sim = simulator(
        fault_rate=0.35, rate_limit=15, token_ttl_s=3, latency_ms=10, slow_fault_s=5, **fleet
    )
    out = tmp_path / "out"
    first_code, first_out, _ = harvest(
        sim.url, out, "--rps", "100", "--max-attempts", "2", "--read-timeout-s", "1"
    )
    assert first_code == 1, first_out
    assert FAILED.search(first_out)
    results = [(first_code, first_out), *run_until_done(sim.url, out, "--rps", "100")]
    requests, retries, rate_limited, sign_ins = summed(results)
    stats: dict[str, Any] = sim.stats()
    faults = sum(stats["faults_injected"].values())
    data_calls = record_requests(stats)
    assert faults >= 0.25 * data_calls  # 35 % drawn; a request never fails 4 times in a row
    assert len(stats["faults_injected"]) >= 5
    assert rate_limited > 0
    assert retries >= rate_limited
    assert sign_ins >= 2
    served_429 = sum(by.get("429", 0) for by in stats["requests"].values())
    assert served_429 >= rate_limited
    print(  # the figures for the report (pytest -s shows them)
        f"\nmisbehaving server: {len(results)} runs, {requests} requests, {retries} retries, "
        f"{rate_limited} rate-limited (server sent {served_429} 429s), {sign_ins} sign-ins, "
        f"{data_calls} data calls, faults injected {stats['faults_injected']}"
    )
    assert archive_problems(out, collect_all(simulator(**fleet).url, EMAIL, PASSWORD)) == []
