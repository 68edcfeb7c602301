"""Damage left by a crash is found and repaired on the next run, with a warning.

A day file cut short (or gone) although the checkpoint vouches for its windows, and a
checkpoint whose last record is torn or garbage: the next run fetches the affected windows
again and ends exact — never a crash, never silently trusted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.archive.integrity import (
    FileSet,
    _vouched_periods,
    _vouched_periods_from_arrays,
    damaged_days,
    file_problem,
    trusting_only_intact,
)
from harvester.archive.layout import ARCHIVE_KEY, day_file_key, partition_file_key
from harvester.archive.storage import LocalStorage
from harvester.errors import Interrupted
from harvester.models import DayAvailability, Device, DeviceDays, FinishedWindow, WholeSlotDays
from harvester.plan.planner import plan_windows
from harvester.plan.windows import grid_slots
from tests.support.crash_harness import EMAIL, PASSWORD, archive_problems
from tests.support.inproc import harvest, record_requests
from tests.support.plain_client import collect_all, list_devices, sign_in
from tests.support.simproc import SimFactory, SimulatorProcess
from tests.test_planner import SPOD, FakeCheckpoint, FakeServer, every_minute, fetch_all

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


def _archive_one_window_short(
    root: Path, partition: str
) -> tuple[LocalStorage, dict[Device, DeviceDays], FakeCheckpoint, list[str]]:
    """A SPOD's four days across a month's end, every window finished but the last day's
    last: each file holding the rows the checkpoint vouches for; and the files' keys."""
    storage = LocalStorage(root)
    storage.write_file(ARCHIVE_KEY, lambda h: h.write(b'{"partition": "%s"}' % partition.encode()))
    server, checkpoint = FakeServer(), FakeCheckpoint()
    start = dt.datetime(2024, 1, 30, tzinfo=dt.UTC)
    server.add(SPOD, every_minute(start, start + dt.timedelta(days=4), step_s=600))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    last = (start + dt.timedelta(days=3)).date()
    del checkpoint.entries[(SPOD.uuid, last)][grid_slots(last)[-1]]
    rows: dict[str, int] = {}
    for (_, day), windows in checkpoint.entries.items():
        key = partition_file_key(SPOD.type, SPOD.uuid, day, partition)
        rows[key] = rows.get(key, 0) + sum(w.records for w in windows.values())
    for key, count in rows.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"_id": [str(i) for i in range(count)]}), path)
    availability = {SPOD: DeviceDays.of(server.availability()[SPOD])}
    return storage, availability, checkpoint, sorted(rows)


@pytest.mark.parametrize("partition", ["day", "month"])
def test_files_a_run_writes_into_are_looked_at_apart_from_the_others(
    tmp_path: Path, partition: str
) -> None:
    """The files a plan may write into (``files="written"``: here the file of the last day,
    one window short, or its month's) and the others (``"unwritten"``, which a run looks at
    while it fetches) part what looking at every file finds: whichever file is cut, the look
    at its own part finds its days, the other look nothing."""
    storage, availability, checkpoint, keys = _archive_one_window_short(tmp_path, partition)
    written = partition_file_key(SPOD.type, SPOD.uuid, dt.date(2024, 2, 2), partition)
    assert len(keys) == (4 if partition == "day" else 2)
    for key in [None, *keys]:
        if key is not None:
            path = tmp_path / key
            whole = path.read_bytes()
            path.write_bytes(whole[:-9])
        found = {
            files: _look(storage, availability, checkpoint, files)
            for files in ("all", "written", "unwritten")
        }
        assert found["all"] == (
            set() if key is None else {(SPOD.uuid, d) for d in _days_of(key, partition)}
        )
        assert found["written"] == (found["all"] if key == written else set())
        assert found["unwritten"] == (found["all"] if key != written else set())
        if key is not None:
            path.write_bytes(whole)


def _days_of(key: str, partition: str) -> list[dt.date]:
    days = [dt.date(2024, 1, 30) + dt.timedelta(days=i) for i in range(4)]
    return [d for d in days if partition_file_key(SPOD.type, SPOD.uuid, d, partition) == key]


def test_a_stopped_look_ends_with_interrupted(tmp_path: Path) -> None:
    """A look asked to stop ends, device by device, with ``Interrupted`` (never a partial
    answer taken for the whole)."""
    storage, availability, checkpoint, _ = _archive_one_window_short(tmp_path, "day")
    with pytest.raises(Interrupted):
        _look(storage, availability, checkpoint, "unwritten", stop=lambda: True)


def _look(
    storage: LocalStorage,
    availability: dict[Device, DeviceDays],
    checkpoint: FakeCheckpoint,
    files: FileSet,
    stop: Callable[[], bool] = lambda: False,
) -> set[tuple[str, dt.date]]:
    """``damaged_days`` of the whole range, told what the checkpoint holds as a run tells it."""
    return damaged_days(
        storage,
        availability,
        checkpoint.finished_for,
        None,
        None,
        checkpoint.finished_days,
        checkpoint.whole_days_of,
        files,
        stop,
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


def test_a_damaged_file_the_plan_never_writes_is_fetched_again_after_the_plans_windows(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """A run with devices still to fetch does not wait for the look at the files it never
    writes: it fetches the plan's windows, then the days of such a file found cut meanwhile,
    in the same run (exit 0, the archive exact, nothing left for the next run)."""
    sim = simulator(**FLEET)
    out = tmp_path / "out"
    done = list_devices(sim.url, sign_in(sim.url, EMAIL, PASSWORD))[0]["uuid"]
    assert harvest(sim.url, out, "--devices", done)[0] == 0
    victim = sorted(out.rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:-9])
    code, stdout, stderr = harvest(sim.url, out, "-v")
    assert code == 0, stdout
    events = [line for line in stderr.splitlines() if '"event":"' in line]
    plan_ready = next(i for i, line in enumerate(events) if '"event":"plan_ready"' in line)
    repair = next(i for i, line in enumerate(events) if '"event":"repair_ready"' in line)
    written = [line for line in events[plan_ready:repair] if '"event":"day_written"' in line]
    assert written
    assert all(f'"device":"{done}"' not in line for line in written)
    after = [line for line in events[repair:] if '"event":"day_written"' in line]
    assert [f'"device":"{done}"' in line for line in after] == [True]
    assert archive_problems(out, collect_all(sim.url, EMAIL, PASSWORD)) == []
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


@settings(max_examples=80, deadline=None)
@given(
    data_days=st.sets(st.integers(0, 80), min_size=1, max_size=30),
    finished_slots=st.dictionaries(
        st.integers(0, 80),
        st.tuples(st.sets(st.integers(0, 11), max_size=12), st.booleans(), st.integers(0, 5)),
        max_size=20,
    ),
    partition=st.sampled_from(["day", "month"]),
    edges=st.tuples(st.none() | st.integers(-2, 85), st.none() | st.integers(-2, 85)),
)
def test_files_to_check_from_arrays_are_those_decided_day_by_day(
    data_days: set[int],
    finished_slots: dict[int, tuple[set[int], bool, int]],
    partition: str,
    edges: tuple[int | None, int | None],
) -> None:
    """The files to check, their in-range days and vouched rows are the same whether the
    days are decided one by one or from the availability's and whole-slot days' arrays
    (whole-slot days and clipped windows, any range, both partitions)."""
    base = dt.date(2024, 1, 20)
    ordinals = sorted(base.toordinal() + d for d in data_days)
    days = DeviceDays(
        np.array(ordinals, np.int32),
        np.full(len(ordinals), 7, np.int64),
        np.array([(o - 719163) * 86_400_000 + 3_600_000 for o in ordinals], np.int64),
    )
    windows: dict[dt.date, list[FinishedWindow]] = {}
    for offset, (slots, clipped, records) in finished_slots.items():
        day = base + dt.timedelta(days=offset)
        midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
        for slot in sorted(slots):
            start = midnight + slot * dt.timedelta(hours=2)
            end = start + dt.timedelta(hours=1 if clipped and slot == min(slots) else 2)
            windows.setdefault(day, []).append(
                FinishedWindow(DEVICE.uuid, DEVICE.type, start, end, records, 9, True)
            )

    def finished_for(_uuid: str, day: dt.date) -> list[FinishedWindow]:
        return windows.get(day, [])

    def finished_days(_uuid: str) -> list[int]:
        return sorted(day.toordinal() for day, held in windows.items() if held)

    def whole_days(_uuid: str) -> WholeSlotDays:
        whole = [
            (day, held)
            for day, held in sorted(windows.items())
            if held and all(w.end - w.start == dt.timedelta(hours=2) for w in held)
        ]
        return WholeSlotDays(
            np.array([day.toordinal() for day, _ in whole], np.int32),
            np.array([sum(1 << (w.start.hour // 2) for w in held) for _, held in whole], np.uint16),
            np.full(len(whole), 9, np.int64),
            np.ones(len(whole), np.bool_),
            np.array([sum(w.records for w in held) for _, held in whole], np.int64),
        )

    lo, hi = (
        None
        if edge is None
        else dt.datetime.combine(base, dt.time(), dt.UTC) + dt.timedelta(days=edge, hours=5)
        for edge in edges
    )
    one_by_one = _vouched_periods(DEVICE, days, partition, lo, hi, finished_for, finished_days)
    from_arrays = _vouched_periods_from_arrays(
        DEVICE, days, partition, lo, hi, finished_for, finished_days, whole_days
    )
    assert _plain(from_arrays) == sorted(_plain(one_by_one))


def _plain(found: list[tuple[int, np.ndarray, int]]) -> list[tuple[int, list[int], int]]:
    """Files to check as plain values (their in-range days as a list), to compare."""
    return [(first, days.tolist(), vouched) for first, days, vouched in found]
