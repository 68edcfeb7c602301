"""Damage left by a crash is found and repaired on the next run, with a warning.

A day file cut short (or gone) although the checkpoint vouches for its windows, and a
checkpoint whose last record is torn or garbage: the next run fetches the affected windows
again and ends exact — never a crash, never silently trusted.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harvester.archive.integrity import damaged_days, file_problem, trusting_only_intact
from harvester.archive.layout import ARCHIVE_KEY, day_file_key
from harvester.archive.storage import LocalStorage
from harvester.models import DayAvailability, Device, DeviceDays, FinishedWindow
from tests.support.crash_harness import EMAIL, PASSWORD, archive_problems
from tests.support.inproc import harvest, record_requests
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory, SimulatorProcess

FLEET = {"seed": 41, "devices": 3, "days": 2, "cadence_s": 600}
DAY = dt.date(2024, 1, 1)
DEVICE = Device(uuid="1001", type="SPOD", name="S")


def finished(records: int) -> FinishedWindow:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return FinishedWindow(
        device_uuid=DEVICE.uuid,
        device_type=DEVICE.type,
        start=start,
        end=start + dt.timedelta(hours=2),
        records=records,
        day_count=records,
        sealed=True,
    )


def availability() -> dict[Device, list[DayAvailability]]:
    last = dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
    return {DEVICE: [DayAvailability(day=DAY, count=3, last_record=last)]}


def write_day_file(root: Path) -> Path:
    path = root / day_file_key(DEVICE.type, DEVICE.uuid, DAY)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"_id": ["a", "b", "c"]}), path)
    return path


def test_intact_file_passes_and_cut_or_missing_file_is_damaged(tmp_path: Path) -> None:
    """The footer check passes a whole file and flags a truncated one and a missing one."""
    storage = LocalStorage(tmp_path)
    path = write_day_file(tmp_path)
    lookup = {(DEVICE.uuid, DAY): [finished(3)]}

    def finished_for(uuid: str, day: dt.date) -> list[FinishedWindow]:
        return lookup.get((uuid, day), [])

    assert damaged_days(storage, availability(), finished_for, None, None) == set()
    path.write_bytes(path.read_bytes()[:-9])
    assert damaged_days(storage, availability(), finished_for, None, None) == {(DEVICE.uuid, DAY)}
    path.unlink()
    assert file_problem(storage, day_file_key(DEVICE.type, DEVICE.uuid, DAY)) == "missing"
    assert damaged_days(storage, availability(), finished_for, None, None) == {(DEVICE.uuid, DAY)}


def test_days_without_records_or_out_of_range_are_not_checked(tmp_path: Path) -> None:
    """No file is expected for windows of 0 records, nor looked at outside the range."""
    storage = LocalStorage(tmp_path)

    def empty_windows(uuid: str, day: dt.date) -> list[FinishedWindow]:
        return [finished(0)]

    assert damaged_days(storage, availability(), empty_windows, None, None) == set()

    def full_windows(uuid: str, day: dt.date) -> list[FinishedWindow]:
        return [finished(3)]

    later = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert damaged_days(storage, availability(), full_windows, later, None) == set()
    assert damaged_days(storage, availability(), full_windows, None, None) == {(DEVICE.uuid, DAY)}


@pytest.mark.parametrize("partition", ["day", "month"])
def test_only_files_holding_a_finished_day_are_looked_at(tmp_path: Path, partition: str) -> None:
    """Given the journal's finished days, a device's other available days cost nothing: the
    checkpoint is asked about the finished days' files only, and the verdict is the same as
    when every day is looked at."""
    storage = LocalStorage(tmp_path)
    storage.write_file(ARCHIVE_KEY, lambda h: h.write(b'{"partition": "%s"}' % partition.encode()))
    last = dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
    days = DeviceDays.of(
        DayAvailability(DAY + dt.timedelta(days=i), 3, last + dt.timedelta(days=i))
        for i in range(90)
    )
    asked: list[dt.date] = []

    def finished_for(uuid: str, day: dt.date) -> list[FinishedWindow]:
        asked.append(day)
        return [finished(3)] if day == DAY else []

    everything = damaged_days(storage, {DEVICE: days}, finished_for, None, None)
    asked.clear()
    by_finished = damaged_days(
        storage, {DEVICE: days}, finished_for, None, None, lambda _uuid: {DAY.toordinal()}
    )
    assert by_finished == everything
    assert (DEVICE.uuid, DAY) in by_finished
    assert set(asked) == (
        {DAY} if partition == "day" else {DAY + dt.timedelta(days=i) for i in range(31)}
    )


def test_trusting_only_intact_hides_damaged_days() -> None:
    """The wrapped lookup answers nothing for a damaged day and passes the others through."""
    lookup = trusting_only_intact(lambda uuid, day: [finished(3)], {(DEVICE.uuid, DAY)})
    assert list(lookup(DEVICE.uuid, DAY)) == []
    assert list(lookup(DEVICE.uuid, DAY + dt.timedelta(days=1))) == [finished(3)]


@pytest.fixture
def complete(simulator: SimFactory, tmp_path: Path) -> tuple[SimulatorProcess, Path]:
    """A simulator and an archive of it made by one complete run."""
    sim = simulator(**FLEET)
    out = tmp_path / "out"
    code, stdout, _ = harvest(sim.url, out)
    assert code == 0, stdout
    return sim, out


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_day_file_is_fetched_again_whole(
    complete: tuple[SimulatorProcess, Path], damage: str
) -> None:
    """A day file cut in half or deleted under a complete checkpoint: warned, re-fetched, exact."""
    sim, out = complete
    victim = sorted(out.rglob("*.parquet"))[1]
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.unlink()
    before = record_requests(sim.stats())
    code, stdout, stderr = harvest(sim.url, out)
    assert code == 0, stdout
    assert '"event":"day_file_damaged"' in stderr
    assert 0 < record_requests(sim.stats()) - before <= 12  # one UTC day: at most 12 windows
    pq.read_metadata(victim)
    assert archive_problems(out, collect_all(sim.url, EMAIL, PASSWORD)) == []
    # Repaired means trusted again: a third run fetches nothing.
    settled = record_requests(sim.stats())
    assert harvest(sim.url, out)[0] == 0
    assert record_requests(sim.stats()) == settled


def last_segment(out: Path) -> Path:
    return sorted((out / "_harvest/checkpoint").glob("seg-*.jsonl"))[-1]


@pytest.mark.parametrize("damage", ["torn", "garbage"])
def test_damaged_last_checkpoint_record_is_repaired(
    complete: tuple[SimulatorProcess, Path], damage: str
) -> None:
    """A torn or garbage last checkpoint record: warned, its window fetched again, exact."""
    sim, out = complete
    segment = last_segment(out)
    body = segment.read_bytes()
    last_line_start = body.rstrip(b"\n").rfind(b"\n") + 1
    if damage == "torn":
        segment.write_bytes(body[: last_line_start + 12])
    else:
        segment.write_bytes(body[:last_line_start] + b'{"k": "fin", \x00\xff garbage}\n')
    before = record_requests(sim.stats())
    code, stdout, stderr = harvest(sim.url, out)
    assert code == 0, stdout
    assert '"event":"checkpoint_repaired"' in stderr
    assert record_requests(sim.stats()) > before
    assert archive_problems(out, collect_all(sim.url, EMAIL, PASSWORD)) == []
    assert list((out / "_harvest/checkpoint").glob("seg-*.jsonl.corrupt-*"))
