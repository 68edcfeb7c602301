"""Fault decisions: seeded, roughly at the configured rate, never too many in a row."""

from __future__ import annotations

from harvester.simulator.faults import FaultPlan, error_page
from harvester.simulator.options import FAULT_KINDS, SimulatorOptions


def test_fault_share_and_kinds_follow_the_options() -> None:
    """About ``fault_rate`` of first attempts fail, with every configured kind appearing."""
    plan = FaultPlan(SimulatorOptions(fault_rate=0.3))
    kinds = [plan.decide("/p", f"body {n}".encode()) for n in range(3000)]
    failed = [kind for kind in kinds if kind is not None]
    assert 700 < len(failed) < 1100
    assert set(failed) == set(FAULT_KINDS)


def test_a_request_never_fails_more_than_the_limit_in_a_row() -> None:
    """Even at rate 1, the same request succeeds after ``max_consecutive_faults`` faults."""
    plan = FaultPlan(SimulatorOptions(fault_rate=1.0, max_consecutive_faults=3))
    outcomes = [plan.decide("/p", b"same") for _ in range(8)]
    assert all(outcome is not None for outcome in outcomes[:3])
    assert outcomes[3] is None
    assert outcomes[7] is None


def test_decisions_are_reproducible_for_the_same_seed() -> None:
    """Two plans with the same seed decide identically for the same request sequence."""
    bodies = [f"b{n % 40}".encode() for n in range(400)]
    first = FaultPlan(SimulatorOptions(fault_rate=0.4, seed=9))
    second = FaultPlan(SimulatorOptions(fault_rate=0.4, seed=9))
    other = FaultPlan(SimulatorOptions(fault_rate=0.4, seed=10))
    decided = [[plan.decide("/p", b) for b in bodies] for plan in (first, second, other)]
    assert decided[0] == decided[1]
    assert decided[0] != decided[2]


def test_error_pages_are_html() -> None:
    """5xx faults carry an HTML body naming the status."""
    assert error_page("502").startswith("<html>")
    assert "502 Bad Gateway" in error_page("502")
