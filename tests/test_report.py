"""``harvester report``: states per device-day, periods, rendering, and the CLI on real holes."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import re
import socket
import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
import structlog

from harvester.archive.availability import AvailabilityColumns
from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.checkpoint.state import DayProgress, DayTotals
from harvester.archive.storage import LocalStorage
from harvester.cli import main
from harvester.errors import ConfigError
from harvester.inspect.report import (
    CellState,
    Coverage,
    DayCells,
    StoredRows,
    classify,
)
from harvester.inspect.report_html import render_html
from harvester.inspect.report_join import build_coverage
from harvester.inspect.report_periods import aggregate, periods
from harvester.inspect.report_png import write_png
from harvester.models import DEVICE_TYPES, Device, DeviceDays
from tests.support.simproc import SimulatorProcess

D1 = dt.date(2024, 3, 1)
FMD = Device("1001", "FMD", "METEC 1001")


def totals(progress: list[DayProgress]) -> DayTotals:
    """``DayProgress`` rows as the checkpoint's columns (sorted by uuid, then day)."""
    rows = sorted(progress, key=lambda d: (d.device_uuid, d.day))
    uuids = sorted({d.device_uuid for d in rows})
    return DayTotals(
        uuids=uuids,
        code=np.array([uuids.index(d.device_uuid) for d in rows], np.int32),
        type_code=np.array([DEVICE_TYPES.index(d.device_type) for d in rows], np.int8),
        day=np.array([d.day.toordinal() for d in rows], np.int32),
        windows_finished=np.array([d.windows_finished for d in rows], np.int32),
        records=np.array([d.records for d in rows], np.int64),
        day_count=np.array([d.day_count for d in rows], np.int64),
        windows_failed=np.array([d.windows_failed for d in rows], np.int32),
    )


def stored_columns(stored: dict[tuple[str, str], dict[dt.date, int]]) -> StoredRows:
    """Rows per (type, uuid) and day as ``read_stored`` returns them."""
    entries = [
        (code, day, n) for code, days in enumerate(stored.values()) for day, n in days.items()
    ]
    entries.sort(key=lambda e: (e[0], e[1]))
    return StoredRows(
        list(stored),
        np.array([e[0] for e in entries], np.int32),
        np.array([e[1].toordinal() for e in entries], np.int32),
        np.array([e[2] for e in entries], np.int64),
    )


def server_columns(counts: dict[str, dict[dt.date, int]]) -> AvailabilityColumns:
    """The server's counts per uuid and day as columns."""
    return AvailabilityColumns.of(
        (
            uuid,
            DeviceDays(
                np.array([d.toordinal() for d in sorted(days)], np.int32),
                np.array([days[d] for d in sorted(days)], np.int64),
                np.zeros(len(days), np.int64),
            ),
        )
        for uuid, days in counts.items()
    )


def states(coverage: Coverage) -> dict[tuple[str, dt.date], CellState]:
    """Each known device-day's state, by (uuid, day)."""
    cells = coverage.cells
    return {
        (coverage.devices[device].uuid, dt.date.fromordinal(day)): CellState(state)
        for device, day, state in zip(
            cells.device.tolist(), cells.day.tolist(), cells.state.tolist(), strict=True
        )
    }


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


@pytest.mark.parametrize(
    ("stored", "expected", "finished", "failed", "state"),
    [
        (10, 10, 12, 0, CellState.COMPLETE),
        (10, 10, 12, 1, CellState.FAILED),
        (4, 10, 12, 0, CellState.PARTIAL),
        (12, 10, 12, 0, CellState.PARTIAL),
        (3, 0, 0, 0, CellState.PARTIAL),
        (0, 10, 12, 0, CellState.MISSING),
        (0, 10, 0, 0, CellState.NOT_FETCHED),
        (0, 10, 0, 2, CellState.FAILED),
        (0, 0, 12, 0, CellState.NO_DATA),
    ],
)
def test_classify_follows_the_documented_order(
    stored: int, expected: int, finished: int, failed: int, state: CellState
) -> None:
    """Each combination of stored rows, server count and windows gets its documented state."""
    assert classify(stored, expected, finished, failed) is state


def test_build_coverage_joins_checkpoint_files_and_recorded_counts() -> None:
    """Cells come from every source; recorded counts are topped up by the checkpoint's."""
    progress = [
        DayProgress("1001", "FMD", D1, 12, 100, 100, 0),
        DayProgress("1001", "FMD", D1 + dt.timedelta(days=1), 12, 90, 120, 0),
        DayProgress("1001", "FMD", D1 + dt.timedelta(days=2), 5, 40, 50, 1),
        DayProgress("1001", "FMD", D1 + dt.timedelta(days=3), 12, 70, 70, 0),
    ]
    stored = {
        ("FMD", "1001"): {D1: 100, D1 + dt.timedelta(days=1): 90, D1 + dt.timedelta(days=2): 40},
        ("RAMP", "2002"): {D1: 5},
    }
    recorded = server_columns({"1001": {D1: 100, D1 + dt.timedelta(days=4): 30}})
    coverage = build_coverage([FMD], totals(progress), stored_columns(stored), recorded)
    assert states(coverage) == {
        ("1001", D1): CellState.COMPLETE,
        ("1001", D1 + dt.timedelta(days=1)): CellState.PARTIAL,  # 90 of the planned 120
        ("1001", D1 + dt.timedelta(days=2)): CellState.FAILED,
        ("1001", D1 + dt.timedelta(days=3)): CellState.MISSING,  # file gone
        ("1001", D1 + dt.timedelta(days=4)): CellState.NOT_FETCHED,
        ("2002", D1): CellState.PARTIAL,  # a file the server never counted
    }
    assert coverage.first == D1
    assert coverage.last == D1 + dt.timedelta(days=4)
    assert coverage.stored == 235
    assert [device.type for device in coverage.devices] == ["FMD", "RAMP"]
    clipped = build_coverage(
        [FMD], totals(progress), stored_columns(stored), recorded, since=D1 + dt.timedelta(days=1)
    )
    assert ("1001", D1) not in states(clipped)


def test_legend_totals_count_every_drawn_cell_absent_days_as_no_data() -> None:
    """The totals count what the picture draws: a device-day inside the drawn range that no
    source knows of (absent from the server's list, nothing stored) is a no-data cell."""
    progress = [DayProgress("1001", "FMD", D1, 12, 100, 100, 0)]
    stored = {("FMD", "1001"): {D1: 100}, ("RAMP", "2002"): {D1 + dt.timedelta(days=3): 5}}
    coverage = build_coverage(
        [FMD], totals(progress), stored_columns(stored), server_columns({"1001": {D1: 100}})
    )
    counted = coverage.state_totals()
    # Two rows over four days: 8 cells, of which 2 known (1001 complete, 2002 partial).
    assert counted == {CellState.COMPLETE: 1, CellState.PARTIAL: 1, CellState.NO_DATA: 6}
    assert sum(counted.values()) == 2 * 4


def test_current_server_counts_are_taken_as_they_are() -> None:
    """With --verify the server's count of now decides, not what the checkpoint planned."""
    progress = totals([DayProgress("1001", "FMD", D1, 12, 100, 100, 0)])
    stored = stored_columns({("FMD", "1001"): {D1: 100}})
    now = server_columns({"1001": {D1: 130}})
    grown = build_coverage([FMD], progress, stored, now, counts_are_current=True)
    assert states(grown)["1001", D1] is CellState.PARTIAL
    gone = build_coverage([FMD], progress, stored, server_columns({}), counts_are_current=True)
    assert states(gone)["1001", D1] is CellState.PARTIAL


def test_periods_switch_from_days_to_weeks_to_months() -> None:
    """A month is days, three years are ISO weeks, a decade is months; columns tile the range."""
    for first, last, unit in [
        (D1, D1 + dt.timedelta(days=29), "day"),
        (dt.date(2022, 1, 1), dt.date(2024, 12, 31), "week"),
        (dt.date(2015, 1, 1), dt.date(2024, 12, 31), "month"),
    ]:
        got_unit, columns = periods(first, last)
        assert got_unit == unit
        assert columns[0].first == first
        assert columns[-1].last == last
        for before, after in itertools.pairwise(columns):
            assert after.first == before.last + dt.timedelta(days=1)


def test_a_period_shows_its_worst_day_and_counts_each_state() -> None:
    """One missing day in a week of complete days makes the week's cell missing."""
    day_states = np.full(100, CellState.COMPLETE, np.int8)
    day_states[3] = CellState.MISSING
    cells = DayCells(
        np.zeros(100, np.int32),
        np.arange(D1.toordinal(), D1.toordinal() + 100, dtype=np.int32),
        np.full(100, 10, np.int64),
        np.full(100, 10, np.int64),
        day_states,
    )
    last = D1 + dt.timedelta(days=99)
    _, columns = periods(D1, last)
    week = aggregate(Coverage([FMD], cells, D1, last, "the test"), columns).row(0)[1]
    assert week.state is CellState.MISSING
    assert week.days == Counter({CellState.COMPLETE: 6, CellState.MISSING: 1})
    assert week.stored == 70


def _synthetic(devices: int, days: int) -> Coverage:
    first = dt.date(2022, 1, 1)
    fleet = [
        Device(str(1001 + index), ("FMD", "SPOD", "RAMP")[index % 3], f"METEC {index}")
        for index in range(devices)
    ]
    device, offset = np.divmod(np.arange(devices * days), days)
    cells = DayCells(
        device.astype(np.int32),
        (first.toordinal() + offset).astype(np.int32),
        np.full(devices * days, 10, np.int64),
        np.full(devices * days, 10, np.int64),
        ((device * 7 + offset // 11) % len(CellState)).astype(np.int8),
    )
    return Coverage(fleet, cells, first, first + dt.timedelta(days=days - 1), "the test")


@pytest.mark.parametrize(("devices", "days"), [(5, 30), (200, 3 * 365)])
def test_png_and_html_render_small_and_large_archives(
    tmp_path: Path, devices: int, days: int
) -> None:
    """5 x 30 and 200 x 3 years both render; the large one grows instead of shrinking text."""
    coverage = _synthetic(devices, days)
    png = tmp_path / "coverage.png"
    write_png(coverage, png)
    width, height = _png_size(png)
    assert 500 < width < 4000
    # at least ~12 pixels per device row, so 6-point labels stay legible
    assert height > devices * 12
    page = render_html(coverage, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    _unit, columns = periods(coverage.first or D1, coverage.last or D1)
    assert page.count('<td class="c s') == devices * len(columns)
    assert "METEC 4 · SPOD · 1005" in page
    assert "<script" not in page
    assert "http" not in page.split("<body>")[1]


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without matplotlib the PNG step fails with the pip line that installs it."""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError, match=re.escape("sensit-harvester[report]")):
        write_png(_synthetic(1, 3), tmp_path / "x.png")


# --------------------------------------------------------------------- end to end


def _cli(*argv: str) -> tuple[int, str]:
    stdout = io.StringIO()
    saved = structlog.get_config()  # main() configures logging globally: restore it after
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            code = main(list(argv))
    finally:
        structlog.configure(**saved)
    return code, stdout.getvalue()


CELL = re.compile(r'<td class="c s(\d)" title="[^"]*? · (\d{4}) · (\d{4}-\d\d-\d\d) · ')


def _html_states(page: str) -> dict[tuple[str, dt.date], CellState]:
    return {
        (uuid, dt.date.fromisoformat(day)): CellState(int(state))
        for state, uuid, day in CELL.findall(page)
    }


@pytest.mark.slow
def test_report_matches_checkpoint_and_verify_on_an_archive_with_holes(
    tmp_path: Path,
) -> None:
    """Failed windows, a range edge, a deleted file and unfetched days each get their colour;
    a --devices selection that matches no device is refused (exit 2)."""
    sim = SimulatorProcess(
        seed=4, devices=3, days=5, cadence_s=600, fault_rate=0.05, fault_kinds="500,503"
    ).start()
    try:
        out = tmp_path / "out"
        login = ["--base-url", sim.url, "--email", "demo@example.com", "--password", "demo"]
        # Chicago days 01-02..01-04 are UTC 01-02 06:00 .. 01-05 06:00: both edges are cut.
        code, _ = _cli(
            "run", *login, "--out", str(out), "--max-attempts", "1", "--rps", "1000", "-q",
            "--since", "2024-01-02", "--until", "2024-01-04", "--timezone", "America/Chicago",
        )  # fmt: skip
        assert code == 1  # some windows failed
        storage = LocalStorage(out)
        journal = CheckpointJournal.open(storage, "test", compact=False)
        failed_days = {(f.device_uuid, f.start.date()) for f in journal.failed()}
        assert failed_days
        whole = [
            d
            for d in journal.days()
            if not d.windows_failed and d.records == d.day_count and d.day == dt.date(2024, 1, 3)
        ]
        deleted = (whole[0].device_uuid, whole[0].day)
        for key in storage.list_files(""):
            if f"device_id={deleted[0]}/day={deleted[1]}/" in key:
                storage.delete(key)
        code, verify_out = _cli("verify", *login, "--out", str(out))
        assert code == 1
        mismatches = {
            (m[1], dt.date.fromisoformat(m[2]))
            for m in re.findall(r"MISMATCH (\w+) (\d+) (\S+):", verify_out)
        }
        pages = {}
        for mode in ("offline", "verify"):
            folder = tmp_path / mode
            extra = [*login, "--verify"] if mode == "verify" else []
            code, printed = _cli("report", "--out", str(out), "--output-dir", str(folder), *extra)
            assert code == 0, printed
            assert (folder / "coverage.png").stat().st_size > 0
            pages[mode] = _html_states((folder / "coverage.html").read_text())
        # A selection that names no device of the archive: a bad option, nothing written.
        nowhere = tmp_path / "nowhere"
        code, _ = _cli(
            "report", "--out", str(out), "--output-dir", str(nowhere), "--devices", "nosuch"
        )
        assert code == 2
        assert not nowhere.exists()
    finally:
        sim.stop()
    states = pages["verify"]
    assert pages["offline"] == states  # the server's counts did not move since the run
    for cell, state in states.items():
        assert (state is CellState.FAILED) == (cell in failed_days), cell
        if state is not CellState.FAILED:
            assert (state is CellState.COMPLETE) == (cell not in mismatches), cell
    assert states[deleted] is CellState.MISSING
    by_day: dict[dt.date, set[CellState]] = {}
    for (_, day), state in states.items():
        by_day.setdefault(day, set()).add(state)
    assert by_day[dt.date(2024, 1, 1)] == {CellState.NOT_FETCHED}
    assert CellState.PARTIAL in by_day[dt.date(2024, 1, 2)] | {CellState.FAILED}
    assert by_day[dt.date(2024, 1, 5)] <= {CellState.PARTIAL, CellState.FAILED}


def test_report_verify_refuses_a_checkpoint_it_cannot_read_before_asking_the_server(
    tmp_path: Path,
) -> None:
    """``report --verify`` on an archive whose checkpoint another version wrote exits 2 for
    the checkpoint, before any request: nothing listens at the base URL, which would have been
    exit 1 had it asked first."""
    checkpoint = tmp_path / "out" / "_harvest" / "checkpoint"
    checkpoint.mkdir(parents=True)
    header = {"checkpoint_version": 99, "run_id": "future", "generation": 99, "seq": 0}
    segment = checkpoint / "seg-0000000099-00000000-future.jsonl"
    segment.write_text(orjson.dumps({**header, "entries": 0, "devices": []}).decode() + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code, _ = _cli(
        "report", "--out", str(tmp_path / "out"), "--output-dir", str(tmp_path / "report"),
        "--verify", "--base-url", nobody, "--email", "a@b.c", "--password", "p",
    )  # fmt: skip
    assert code == 2
    assert segment.read_text().startswith('{"checkpoint_version":99')
    assert not (tmp_path / "report").exists()
