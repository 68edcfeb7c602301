"""An exception nobody foresaw, from the CLI: one line naming it and the device-day, exit 1,
the summary and the manifest true to what was done; the next run completes exactly."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from harvester.archive.sink import DayWriteResult, ParquetSink, WindowRows
from harvester.cli import main
from harvester.models import Device
from tests.support import inproc
from tests.support.inproc import assert_same_records
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory

pytestmark = pytest.mark.slow

FLEET = {"seed": 12, "devices": 3, "days": 2, "cadence_s": 900}


def test_a_bug_in_a_day_write_exits_1_with_one_line_and_a_true_summary(
    simulator: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink raises a ZeroDivisionError for the second day it writes. The run exits 1
    (never 0), prints one error line naming the exception and the device-day and no
    traceback, and its summary and manifest count windows left for the next run and carry
    the error. The next run, without the bug, leaves the archive exact."""
    sim = simulator(**FLEET)
    out = tmp_path / "out"
    real_write = ParquetSink.write_day
    writes: list[tuple[str, dt.date]] = []

    def write_day(
        self: ParquetSink, device: Device, day: dt.date, windows: Sequence[WindowRows]
    ) -> DayWriteResult:
        writes.append((device.uuid, day))
        if len(writes) == 2:
            raise ZeroDivisionError("division by zero in a helper")
        return real_write(self, device, day, windows)

    monkeypatch.setattr(ParquetSink, "write_day", write_day)
    code, stdout, stderr = inproc.harvest(sim.url, out, "--concurrency", "2")
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("harvester: error")]
    assert len(errors) == 1, stderr
    device, day = writes[1]
    assert "ZeroDivisionError" in errors[0]
    assert f"device {device} day {day}" in errors[0]
    assert "Traceback" not in stderr + stdout
    (manifest_path,) = (out / "_harvest/runs").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    assert "ZeroDivisionError" in manifest["error"]
    assert manifest["windows_left"] > 0
    assert (
        manifest["windows_done"] + manifest["windows_failed"] + manifest["windows_left"]
        == manifest["windows_total"]
    )
    assert f"{manifest['windows_left']} left for next run" in stdout
    status = io.StringIO()
    with contextlib.redirect_stdout(status):
        assert main(["status", "--out", str(out)]) == 0
    assert "stopped by an error (unexpected ZeroDivisionError" in status.getvalue()
    assert f"{manifest['windows_left']} left for the next run" in status.getvalue()

    monkeypatch.setattr(ParquetSink, "write_day", real_write)
    code, stdout, stderr = inproc.harvest(sim.url, out)
    assert code == 0, stderr
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert_same_records(table, collect_all(sim.url, "demo@example.com", "demo"))


def test_verbose_shows_the_original_traceback(
    simulator: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With -v the unexpected error's original traceback (the chained cause) is printed."""
    sim = simulator(**FLEET)

    def write_day(*args: object) -> DayWriteResult:
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(ParquetSink, "write_day", write_day)
    code, _, stderr = inproc.harvest(sim.url, tmp_path / "out", "-v")
    assert code == 1
    assert "Traceback" in stderr
    assert "ZeroDivisionError: deep inside" in stderr
