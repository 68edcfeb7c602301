"""Generated records: deterministic, varying, and changing shape after a firmware update."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from harvester.simulator.fleet import SimDevice, build_fleet
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.records import one_record, window_body

NEW_FIELD = {"FMD": "methane_ppm_avg", "RAMP": "pm10"}
NOW_FRACTIONAL = {"FMD": "battery", "RAMP": "co2", "SPOD": "tc_heatOutput"}
NOW_NULLABLE = {"FMD": "signal_rssi", "RAMP": "so2", "SPOD": "ws_direction"}


def _records(device: SimDevice, start: int, count: int, step: int = 60) -> list[dict[str, Any]]:
    times = np.arange(start, start + count * step, step, dtype=np.int64)
    data: list[dict[str, Any]] = json.loads(window_body(device, times))["data"]
    return data


def test_each_type_changes_shape_at_its_firmware_update() -> None:
    """Before the update: old shape; after: new field, int turned float, some nulls."""
    fleet = build_fleet(SimulatorOptions(devices=3, days=6, seed=11))
    for device in fleet:
        change = device.firmware_change
        assert change is not None
        before = _records(device, change - 3000 * 60, 3000)
        after = _records(device, change, 3000)
        new_field = NEW_FIELD.get(device.type)
        if new_field:
            assert not any(new_field in r for r in before)
            assert all(new_field in r for r in after)
        fractional = NOW_FRACTIONAL[device.type]
        assert all(isinstance(r[fractional], int) for r in before)
        assert all(isinstance(r[fractional], float) for r in after)
        nullable = NOW_NULLABLE[device.type]
        assert all(r[nullable] is not None for r in before)
        assert 0 < sum(r[nullable] is None for r in after) < len(after) / 2


def test_records_are_a_function_of_time_not_of_the_window() -> None:
    """A record is identical whichever window (or single lookup) produced it."""
    device = build_fleet(SimulatorOptions(devices=2, seed=3))[1]
    start = device.timeline.first or 0
    wide = {r["_id"]: r for r in _records(device, start, 200)}
    narrow = _records(device, start + 50 * 60, 10)
    assert all(wide[r["_id"]] == r for r in narrow)
    ordered = sorted(wide.values(), key=lambda record: str(record["date"]))
    assert one_record(device, start + 60) == ordered[1]


def test_values_vary_realistically() -> None:
    """Values are not constants, stay in plausible ranges, and move smoothly-ish."""
    fleet = build_fleet(SimulatorOptions(devices=3, seed=2))
    for device in fleet:
        records = _records(device, device.timeline.first or 0, 1440)
        temps = [r["temp"] for r in records]
        assert len(set(temps)) > 100
        assert -30 < min(temps) < max(temps) < 50
        humidity = "rh_Humd" if device.type == "SPOD" else "rh"
        assert all(0 <= r[humidity] <= 100 for r in records)
        steps = np.abs(np.diff(temps))
        assert float(np.median(steps)) < 1.0
