"""The harvester under each simulator switch that flips one assumption about the real service.

Whatever the service does where the vendor's document is silent (half-open windows, oldest
first, a silent cap, a bare array, other date styles), a run must store exactly the archive the
default simulator of the same seed gives: every record once, every field equal. Exclusive
bounds lose the records on the 2-hour grid's edges, which no client can see in the answers:
``verify`` must report it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.simulator.threaded import threaded_simulator
from tests.support import inproc

#: Two days of three devices (one of each type), a record every 10 minutes: 687 records.
FLEET: dict[str, Any] = {"seed": 7, "devices": 3, "days": 2, "cadence_s": 600}
Rows = list[dict[str, Any]]


def harvest(tmp_path: Path, run_short: int = 0, **switch: str | float) -> tuple[Rows, int, str]:
    """Run, then verify, against a simulator of ``FLEET`` with ``switch``; returns the
    archive's rows (each with every field of its file, and the file's place in the archive)
    sorted by ``_id``, verify's exit code and its output. The run must exit 0, or with
    ``run_short`` device-days short of the server's count, exit 1 saying so."""
    out = tmp_path / "out"
    with threaded_simulator(**FLEET, **switch) as url:
        code, stdout, stderr = inproc.harvest(url, out)
        assert code == (1 if run_short else 0), stdout[-2000:] + stderr[-2000:]
        if run_short:
            assert f"SHORT    {run_short} device-days" in stdout
        verified, report, _ = inproc.harvest(url, out, command="verify")
    rows = [
        {**row, "file": path.relative_to(out).as_posix()}
        for path in out.rglob("*.parquet")
        if "_harvest" not in path.parts
        for row in pq.read_table(path).to_pylist()
    ]
    return sorted(rows, key=lambda row: str(row["_id"])), verified, report


@pytest.fixture(scope="module")
def default_rows(tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """The archive of the default simulator, verified."""
    rows, verified, report = harvest(tmp_path_factory.mktemp("default"))
    assert verified == 0, report
    assert len(rows) == 687
    return rows


@pytest.mark.parametrize(
    "switch",
    [
        {"bounds": "half-open"},
        {"order": "oldest"},
        {"over_cap": "truncate"},
        {"envelope": "bare"},
        {"date_style": "iso-s"},
        {"date_style": "space"},
    ],
    ids=lambda switch: "-".join(f"{k}={v}" for k, v in switch.items()),
)
def test_a_flipped_assumption_changes_nothing_in_the_archive(
    switch: dict[str, str], default_rows: Rows, tmp_path: Path
) -> None:
    """The run stores exactly the default archive's records, field for field, and verify
    finds every day complete."""
    rows, verified, report = harvest(tmp_path, **switch)
    assert verified == 0, report
    assert rows == default_rows


def _on_the_grid(row: dict[str, Any]) -> bool:
    """Whether a record sits on a window edge: an even hour, to the second."""
    moment: dt.datetime = row["date"]
    return moment.hour % 2 == 0 and moment.minute == 0 and moment.second == 0


def test_exclusive_bounds_lose_records_on_window_edges_and_verify_reports_it(
    default_rows: Rows, tmp_path: Path
) -> None:
    """Under ``(start, end)`` the records on even hours fall between two windows: the run
    exits 1 counting the device-days short of the server's count, and verify names each."""
    rows, verified, report = harvest(tmp_path, run_short=6, bounds="exclusive")
    assert rows == [row for row in default_rows if not _on_the_grid(row)]
    lost = len(default_rows) - len(rows)
    assert lost == 3 * (12 + 8)  # every even hour of day one, 00:00 to 14:00 of day two
    assert verified == 1
    for uuid in ("1001", "1002", "1003"):
        assert f"{uuid} 2024-01-01: server 144, stored 132 (-12)" in report
        assert f"{uuid} 2024-01-02: server 85, stored 77 (-8)" in report


def test_a_silent_cap_below_two_hours_loses_records_and_verify_reports_it(
    default_rows: Rows, tmp_path: Path
) -> None:
    """Should the real cap be 1 hour and truncate silently, each 2-hour window comes back
    with its first hour only: the run and verify exit 1, every device-day short."""
    rows, verified, report = harvest(tmp_path, run_short=6, over_cap="truncate", max_window_h=1)
    kept = [row for row in default_rows if row["date"].hour % 2 == 0 or _on_the_hour(row)]
    assert rows == kept
    assert verified == 1
    assert "MISMATCH" in report


def _on_the_hour(row: dict[str, Any]) -> bool:
    moment: dt.datetime = row["date"]
    return moment.minute == 0 and moment.second == 0
