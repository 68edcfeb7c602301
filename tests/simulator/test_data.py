"""Window assembly: block slices and exact renders agree; the cache stays bounded."""

from __future__ import annotations

import json
from typing import Any

from harvester.simulator.data import BLOCK_ROWS, SimulatedData
from harvester.simulator.fleet import epoch
from harvester.simulator.options import SimulatorOptions


def _records(body: bytes) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(body)["data"]
    return data


def test_big_window_equals_its_small_windows_stitched_together() -> None:
    """An exact render of a 2 h window equals the block slices of its 10-minute pieces."""
    options = SimulatorOptions(devices=3, days=3, cadence_s=1, cache_mb=1)
    data = SimulatedData(options)
    start = epoch(options.start) + 86_400 + 3_600
    for device in data.devices:
        body, count = data.window(device, start, start + 7_200)
        big = _records(body)
        assert count == len(big) > BLOCK_ROWS
        stitched: dict[str, dict[str, Any]] = {}
        for offset in range(0, 7_200, 600):
            piece, _ = data.window(device, start + offset, start + offset + 600)
            stitched.update((r["_id"], r) for r in _records(piece))
        assert sorted(stitched.values(), key=lambda r: str(r["date"]), reverse=True) == big
        assert data.window(device, start, start + 7_200) == (body, count)


def test_block_cache_stays_within_its_budget() -> None:
    """Rendered blocks are evicted once they exceed ``cache_mb``."""
    options = SimulatorOptions(devices=1, days=3, cadence_s=1, cache_mb=1)
    data = SimulatedData(options)
    device = data.devices[0]
    start = epoch(options.start)
    for minute in range(0, 2_000, 7):
        data.window(device, start + minute * 60, start + minute * 60 + 60)
    assert 0 < data.cached_bytes <= 1_000_000
