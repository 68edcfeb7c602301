"""The report's columns against the per-day objects they replaced: states, the join of the
sources, the folding into periods, and the columnar readers of the recorded copies."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.archive.availability import (
    read_availability,
    read_availability_columns,
    record_availability,
)
from harvester.archive.checkpoint.state import DayProgress
from harvester.archive.layout import MONTH, day_file_key, partition_file_key, temporary_name
from harvester.archive.storage import LocalStorage
from harvester.inspect.report import (
    CellState,
    Coverage,
    DayCells,
    StoredRows,
    classify,
    classify_days,
    read_stored,
    summary_line,
)
from harvester.inspect.report_join import build_coverage, coverage_parts, joined
from harvester.inspect.report_periods import Period, PeriodCell, aggregate, periods
from harvester.models import DEVICE_TYPES, DayAvailability, Device, DeviceDays
from harvester.plan.shards import Shard
from tests.test_report import server_columns, stored_columns, totals

D0 = dt.date(2023, 12, 20)
_SMALL = st.sampled_from([0, 1, 2, 5, 12])


def _classify_all(rows: list[tuple[int, int, int, int]]) -> list[int]:
    table = np.array(rows, np.int64).reshape(-1, 4)
    stored, expected, finished, failed = table.T
    return classify_days(
        stored, expected, finished.astype(np.int32), failed.astype(np.int32)
    ).tolist()


@given(st.lists(st.tuples(_SMALL, _SMALL, _SMALL, _SMALL), max_size=60))
def test_vectorised_states_equal_classify(rows: list[tuple[int, int, int, int]]) -> None:
    """Element-wise, ``classify_days`` gives every combination of stored rows, server count,
    finished and failed windows the state ``classify`` gives it (equal, zero and larger)."""
    assert _classify_all(rows) == [classify(*row) for row in rows]


def test_every_small_combination_gets_the_state_of_classify() -> None:
    """The whole grid of 0..3 for each input, at once, as ``classify`` one by one."""
    grid = list(itertools.product(range(4), repeat=4))
    assert _classify_all(grid) == [classify(*row) for row in grid]


# --------------------------------------------------------------------- the join


_Cells = dict[tuple[str, dt.date], tuple[int, int, CellState]]


def reference_coverage(
    devices: list[Device],
    progress: list[DayProgress],
    stored: dict[tuple[str, str], dict[dt.date, int]],
    server: dict[str, dict[dt.date, int]],
    current: bool,
    since: dt.date | None,
    until: dt.date | None,
) -> tuple[list[Device], _Cells]:
    """The per-day join ``build_coverage`` did before it was columnar, kept as the reference."""
    by_uuid: dict[str, Device] = {}
    for device in devices:
        by_uuid.setdefault(device.uuid, device)
    for entry in progress:
        by_uuid.setdefault(entry.device_uuid, Device(entry.device_uuid, entry.device_type, ""))
    for device_type, uuid in stored:
        if device_type in DEVICE_TYPES:
            by_uuid.setdefault(uuid, Device(uuid, device_type, ""))
    checkpoint = {(d.device_uuid, d.day): d for d in progress}
    drawn = sorted(by_uuid.values(), key=lambda d: (d.type, d.name or d.uuid, d.uuid))
    cells: _Cells = {}
    for device in drawn:
        on_disk = stored.get((device.type, device.uuid), {})
        counts = server.get(device.uuid, {})
        days = set(on_disk) | set(counts) | {day for uuid, day in checkpoint if uuid == device.uuid}
        for day in days:
            if (since and day < since) or (until and day > until):
                continue
            known = checkpoint.get((device.uuid, day))
            expected = counts.get(day, 0)
            if not current and known is not None:
                expected = max(expected, known.day_count)
            rows = on_disk.get(day, 0)
            finished, failed = (known.windows_finished, known.windows_failed) if known else (0, 0)
            cells[device.uuid, day] = (rows, expected, classify(rows, expected, finished, failed))
    return drawn, cells


def _random_sources(
    rng: random.Random,
) -> tuple[
    list[Device],
    list[DayProgress],
    dict[tuple[str, str], dict[dt.date, int]],
    dict[str, dict[dt.date, int]],
]:
    uuids = [f"u{i:02d}" for i in range(rng.randint(1, 12))]
    kind = {uuid: rng.choice(DEVICE_TYPES) for uuid in uuids}
    listed = [
        Device(uuid, rng.choice([kind[uuid], rng.choice(DEVICE_TYPES)]), rng.choice(["", "A", "B"]))
        for uuid in rng.sample(uuids, rng.randint(0, len(uuids)))
    ]
    days = [D0 + dt.timedelta(days=i) for i in range(rng.randint(1, 40))]
    progress = [
        DayProgress(
            uuid,
            rng.choice([kind[uuid], kind[uuid], rng.choice(DEVICE_TYPES)]),
            day,
            rng.choice([0, 3, 12]),
            rng.randint(0, 30),
            rng.choice([0, 10, 20, 30]),
            rng.choice([0, 0, 0, 1]),
        )
        for uuid in uuids
        for day in days
        if rng.random() < 0.4
    ]
    stored: dict[tuple[str, str], dict[dt.date, int]] = {}
    for uuid in uuids:
        for folder in {kind[uuid], rng.choice([*DEVICE_TYPES, "OTHER"])}:
            picked = [day for day in days if rng.random() < 0.3]
            if picked:
                stored[folder, uuid] = {day: rng.choice([0, 5, 10, 20]) for day in picked}
    server = {
        uuid: {day: rng.choice([0, 10, 20, 30]) for day in days if rng.random() < 0.5}
        for uuid in [*uuids, "not-drawn"]
        if rng.random() < 0.9
    }
    return listed, progress, stored, server


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.booleans())
def test_the_columnar_join_equals_the_per_day_join(rng: random.Random, current: bool) -> None:
    """On random sources (devices listed, unlisted or listed under another type, files in
    other types' folders, days known to one source only, a range edge or none) the devices,
    each day's rows, server count and state, the drawn range and the summary are those of
    the per-day join."""
    listed, progress, stored, server = _random_sources(rng)
    since = rng.choice([None, D0 + dt.timedelta(days=5)])
    until = rng.choice([None, D0 + dt.timedelta(days=25)])
    coverage = build_coverage(
        listed,
        totals(progress),
        stored_columns(stored),
        server_columns(server),
        counts_are_current=current,
        since=since,
        until=until,
    )
    drawn, expected = reference_coverage(listed, progress, stored, server, current, since, until)
    assert coverage.devices == drawn
    cells = coverage.cells
    got = {
        (drawn[d].uuid, dt.date.fromordinal(day)): (rows, count, CellState(state))
        for d, day, rows, count, state in zip(
            *(c.tolist() for c in (cells.device, cells.day, cells.stored, cells.expected)),
            cells.state.tolist(),
            strict=True,
        )
    }
    assert got == expected
    assert coverage.first == min((day for _, day in expected), default=None)
    assert coverage.last == max((day for _, day in expected), default=None)
    if coverage.first is not None and coverage.last is not None:
        width = (coverage.last - coverage.first).days + 1
        counted = Counter(state for _, _, state in expected.values())
        counted[CellState.NO_DATA] += width * len(drawn) - len(expected)
        assert coverage.state_totals() == counted
    assert summary_line(coverage).startswith(f"{len(drawn)} devices, ")


def test_selecting_devices_keeps_their_cells_and_the_drawn_range() -> None:
    """``--devices`` and ``--device-type`` keep the chosen rows with their own cells; the
    columns still span every device's days, as before the selection."""
    fleet = [Device("a", "FMD", "A"), Device("b", "RAMP", "B"), Device("c", "FMD", "C")]
    cells = DayCells(
        np.array([0, 1, 1, 2], np.int32),
        np.array(
            [D0.toordinal(), D0.toordinal(), D0.toordinal() + 9, D0.toordinal() + 3], np.int32
        ),
        np.array([1, 2, 3, 4], np.int64),
        np.array([1, 5, 5, 4], np.int64),
        np.array(
            [CellState.COMPLETE, CellState.PARTIAL, CellState.FAILED, CellState.COMPLETE], np.int8
        ),
    )
    whole = Coverage(fleet, cells, D0, D0 + dt.timedelta(days=9), "the test")
    fmd = whole.select(lambda device: device.type == "FMD")
    assert fmd.devices == [fleet[0], fleet[2]]
    assert fmd.cells.device.tolist() == [0, 1]
    assert fmd.cells.stored.tolist() == [1, 4]
    assert (fmd.first, fmd.last) == (whole.first, whole.last)
    assert fmd.state_totals() == {CellState.COMPLETE: 2, CellState.NO_DATA: 18}
    assert whole.select(lambda device: True) is whole


# --------------------------------------------------------------------- periods


def reference_fold(
    days: dict[dt.date, tuple[CellState, int, int]], columns: list[Period]
) -> list[PeriodCell]:
    """The per-day folding ``aggregate`` did before it was columnar, kept as the reference."""
    cells = [PeriodCell() for _ in columns]
    starts = [column.first for column in columns]
    for day, (state, stored, expected) in days.items():
        index = bisect.bisect_right(starts, day) - 1
        if index < 0 or day > columns[index].last:
            continue
        cells[index].state = max(cells[index].state, state)
        cells[index].stored += stored
        cells[index].expected += expected
        cells[index].days[state] += 1
    return cells


def test_a_large_coverage_folds_as_the_per_day_code_did() -> None:
    """200 devices over days, weeks and months, with holes: every period's worst state, sums
    and day counts, and each device's complete and known days, as folded day by day."""
    rng = np.random.default_rng(5)
    for n_devices, n_days in [(200, 80), (200, 700), (200, 1500)]:
        first = dt.date(2020, 2, 27)
        device, offset = np.divmod(np.arange(n_devices * n_days), n_days)
        known = rng.random(len(device)) < 0.7
        device, offset = device[known], offset[known]
        cells = DayCells(
            device.astype(np.int32),
            (first.toordinal() + offset).astype(np.int32),
            rng.integers(0, 1000, len(device)),
            rng.integers(0, 1000, len(device)),
            rng.integers(0, len(CellState), len(device)).astype(np.int8),
        )
        last = first + dt.timedelta(days=n_days - 1)
        fleet = [Device(str(i), "FMD", "") for i in range(n_devices)]
        coverage = Coverage(fleet, cells, first, last, "the test")
        _, columns = periods(first, last)
        grid = aggregate(coverage, columns)
        per_device: list[dict[dt.date, tuple[CellState, int, int]]] = [{} for _ in fleet]
        for d, day, state, stored, expected in zip(
            *(c.tolist() for c in (cells.device, cells.day, cells.state, cells.stored)),
            cells.expected.tolist(),
            strict=True,
        ):
            per_device[d][dt.date.fromordinal(day)] = (CellState(state), stored, expected)
        complete, with_data = grid.days_of(CellState.COMPLETE), grid.days_with_data()
        for index, days in enumerate(per_device):
            assert grid.row(index) == reference_fold(days, columns), (n_days, index)
            states = Counter(state for state, _, _ in days.values())
            assert complete[index] == states[CellState.COMPLETE]
            assert with_data[index] == len(days) - states[CellState.NO_DATA]


def test_days_outside_the_columns_are_ignored() -> None:
    """A day before the first column or after the last is in no period (as before)."""
    cells = DayCells(
        np.zeros(3, np.int32),
        np.array([D0.toordinal() - 1, D0.toordinal(), D0.toordinal() + 5], np.int32),
        np.array([7, 1, 7], np.int64),
        np.array([7, 1, 7], np.int64),
        np.array([CellState.FAILED, CellState.COMPLETE, CellState.FAILED], np.int8),
    )
    coverage = Coverage([Device("a", "FMD", "")], cells, D0, D0 + dt.timedelta(days=5), "t")
    _, columns = periods(D0, D0 + dt.timedelta(days=2))
    assert aggregate(coverage, columns).row(0)[0] == PeriodCell(
        CellState.COMPLETE, 1, 1, Counter({CellState.COMPLETE: 1})
    )


# --------------------------------------------------------------------- the readers


def _days(*counts: int) -> DeviceDays:
    return DeviceDays.of(
        DayAvailability(D0 + dt.timedelta(days=i), n, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        for i, n in enumerate(counts)
    )


def test_recorded_counts_read_as_columns_equal_the_dicts(tmp_path: Path) -> None:
    """Legacy JSON, the unsharded copy and shards' copies merge as ``read_availability``
    merges them: a device's days are those of the last copy that lists it."""
    storage = LocalStorage(tmp_path)
    legacy = {"devices": {"a": {"2023-12-20": 4, "2023-12-22": 1}, "z": {}, "b": {"2023-12-20": 9}}}
    storage.write_file("_harvest/availability.json", lambda h: h.write(orjson.dumps(legacy)))
    one, two = Device("b", "FMD", ""), Device("c", "SPOD", "")
    record_availability(storage, {one: _days(3, 0, 5)}, None)
    record_availability(storage, {two: _days(1, 2)}, Shard(0, 2))
    record_availability(storage, {one: _days(8)}, Shard(1, 2))
    columns = read_availability_columns(storage)
    as_dicts: dict[str, dict[dt.date, int]] = {}
    for code, day, count in zip(
        columns.code.tolist(), columns.day.tolist(), columns.count.tolist(), strict=True
    ):
        as_dicts.setdefault(columns.uuids[code], {})[dt.date.fromordinal(day)] = count
    expected = {uuid: days for uuid, days in read_availability(storage).items() if days}
    assert as_dicts == expected
    assert expected["b"] == {D0: 8}


def test_an_unreadable_recorded_copy_counts_as_none(tmp_path: Path) -> None:
    """A damaged copy is warned about and read as empty, as ``read_availability`` does."""
    storage = LocalStorage(tmp_path)
    storage.write_file("_harvest/availability.arrow", lambda h: h.write(b"not arrow"))
    assert len(read_availability_columns(storage)) == 0


def _parquet(rows: int, day: dt.date, hours: int = 0) -> pa.Table:
    start = dt.datetime.combine(day, dt.time(0), dt.UTC)
    dates = [start + dt.timedelta(hours=hours * i) for i in range(rows)]
    return pa.table({"date": pa.array(dates, pa.timestamp("ms", tz="UTC"))})


def test_stored_rows_read_footers_and_month_dates_into_columns(tmp_path: Path) -> None:
    """Day files count their footer's rows (an unreadable one 0); a month file's dates count
    per UTC day and win over the day files of its days (listed later); an unreadable month
    file counts nothing; temporaries are ignored; uuids are decoded."""
    storage = LocalStorage(tmp_path)

    def write(key: str, table: pa.Table | None) -> None:
        storage.write_file(key, lambda h: pq.write_table(table, h) if table else h.write(b"x"))

    january = D0 + dt.timedelta(days=15)
    write(day_file_key("FMD", "a/1", D0), _parquet(5, D0))
    write(day_file_key("FMD", "a/1", D0 + dt.timedelta(days=1)), _parquet(7, D0))
    write(day_file_key("FMD", "a/1", january), _parquet(7, january))
    write(day_file_key("FMD", "a/1", january + dt.timedelta(days=1)), None)
    write(partition_file_key("FMD", "a/1", D0, MONTH), _parquet(30, D0, hours=4))
    write(partition_file_key("RAMP", "b", january, MONTH), None)
    leftover = tmp_path / day_file_key("SPOD", "c", D0)
    write(day_file_key("SPOD", "c", D0), _parquet(2, D0))
    pq.write_table(_parquet(3, D0), leftover.with_name(temporary_name(leftover.name, "1234")))
    stored = read_stored(storage)
    month = {D0 + dt.timedelta(days=i): 6 for i in range(5)}  # 00:00 .. 20:00 every 4 h
    assert stored.by_device() == {
        ("FMD", "a/1"): {**month, january: 7, january + dt.timedelta(days=1): 0},
        ("SPOD", "c"): {D0: 2},
    }
    assert stored.devices == [("FMD", "a/1"), ("RAMP", "b"), ("SPOD", "c")]


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.booleans(), st.sampled_from([1, 2, 3, 5]))
def test_the_join_in_parts_equals_the_join_of_the_whole(
    rng: random.Random, current: bool, per_part: int
) -> None:
    """Joined a few devices at a time, each part reading only its own devices' folders (and
    none under another type than its device's), the coverage is the whole join's: the same
    devices in the same order, the same cells in the same order, the same drawn range."""
    listed, progress, stored, server = _random_sources(rng)
    since = rng.choice([None, D0 + dt.timedelta(days=5)])
    until = rng.choice([None, D0 + dt.timedelta(days=25)])
    checkpoint, files, counts = totals(progress), stored_columns(stored), server_columns(server)
    options = {"counts_are_current": current, "since": since, "until": until}
    whole = build_coverage(listed, checkpoint, files, counts, **options)
    asked: list[tuple[str, str]] = []

    def read(folders: Sequence[tuple[str, str]]) -> StoredRows:
        asked.extend(folders)
        return stored_columns({folder: stored[folder] for folder in folders})

    parts = list(
        coverage_parts(
            listed, checkpoint, files.devices, counts, read, devices_per_part=per_part, **options
        )
    )
    assert all(len(part.devices) <= per_part for part in parts)
    joined_coverage = joined(parts, counts_are_current=current)
    assert joined_coverage.devices == whole.devices
    for name in ("device", "day", "stored", "expected", "state"):
        assert np.array_equal(getattr(joined_coverage.cells, name), getattr(whole.cells, name))
    assert (joined_coverage.first, joined_coverage.last) == (whole.first, whole.last)
    assert joined_coverage.counts_from == whole.counts_from
    types = {device.uuid: device.type for device in whole.devices}
    assert sorted(asked) == sorted(folder for folder in stored if types.get(folder[1]) == folder[0])
