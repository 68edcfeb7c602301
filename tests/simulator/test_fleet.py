"""The simulated fleet: per-device ranges, outage days and partial days, determinism."""

from __future__ import annotations

import numpy as np

from harvester.simulator.fleet import DAY, build_fleet, epoch
from harvester.simulator.options import SimulatorOptions


def _daily_counts(options: SimulatorOptions) -> list[list[int]]:
    start = epoch(options.start)
    bounds = np.arange(start, start + (options.days + 1) * DAY, DAY, dtype=np.int64)
    result = []
    for device in build_fleet(options):
        before = device.timeline.count_before(bounds)
        result.append(np.diff(before).tolist())
    return result


def test_devices_have_own_ranges_outage_days_and_partial_days() -> None:
    """Over 60 days the fleet shows late starts, early stops, empty days and partial days."""
    options = SimulatorOptions(devices=9, days=60, cadence_s=60, seed=1)
    full = DAY // 60
    counts = _daily_counts(options)
    firsts = {next(n for n, c in enumerate(days) if c) for days in counts}
    assert len(firsts) > 2
    assert any(days[-1] == 0 for days in counts)
    inner_empty = 0
    for days in counts:
        active = [n for n, c in enumerate(days) if c]
        inner_empty += sum(c == 0 for c in days[active[0] : active[-1]])
    assert inner_empty > 0
    assert sum(0 < c < full for days in counts for c in days[1:-1]) > 9
    assert all(c <= full for days in counts for c in days)


def test_no_record_before_the_range_start() -> None:
    """No device reports before ``start``."""
    options = SimulatorOptions(devices=6, days=5)
    for device in build_fleet(options):
        assert device.timeline.first is not None
        assert device.timeline.first >= epoch(options.start)


def test_fleet_is_a_pure_function_of_the_options() -> None:
    """The same options build the same fleet; another seed builds a different one."""
    one = build_fleet(SimulatorOptions(seed=5, days=30))
    two = build_fleet(SimulatorOptions(seed=5, days=30))
    other = build_fleet(SimulatorOptions(seed=6, days=30))
    assert [d.object_id for d in one] == [d.object_id for d in two]
    assert [d.timeline.starts.tolist() for d in one] == [d.timeline.starts.tolist() for d in two]
    assert [d.object_id for d in one] != [d.object_id for d in other]
    assert len({d.id_stem for d in one}) == len(one)
