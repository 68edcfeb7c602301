"""What a data file says of itself before planning trusts the checkpoint (``read_file_facts``):
its frame, and a month file's row count from its footer, read with the frame in one open.

A file cut anywhere or with a garbled footer is a problem, never a crash; a footer longer than
the bytes first read is read whole; the facts gathered while discovery runs spare
``damaged_days`` every file (and every key) it would otherwise look at again.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.archive.integrity import (
    VouchedFileFacts,
    _periods_meeting,
    damaged_days,
    facts_of_vouched_files,
    read_file_facts,
)
from harvester.archive.layout import ARCHIVE_KEY, partition_file_key, period_of
from harvester.archive.storage import LocalStorage
from harvester.models import Device, DeviceDays, FinishedWindow, WholeSlotDays
from harvester.plan.windows import day_overlaps

DEVICE = Device(uuid="1001", type="SPOD", name="S")
JAN = dt.date(2024, 1, 1)
KEY = partition_file_key(DEVICE.type, DEVICE.uuid, JAN, "month")


class CountingStorage(LocalStorage):
    """A local archive that counts the files opened for reading."""

    opened = 0

    def open_input(self, key: str) -> BinaryIO:
        self.opened += 1
        return super().open_input(key)


def month_archive(root: Path, rows: int = 5, metadata_bytes: int = 0) -> tuple[LocalStorage, Path]:
    """A month archive holding one month file of ``rows`` rows, its footer padded with
    ``metadata_bytes`` of key-value metadata."""
    storage = CountingStorage(root)
    storage.write_file(ARCHIVE_KEY, lambda h: h.write(b'{"partition": "month"}'))
    table = pa.table({"_id": [str(i) for i in range(rows)]})
    if metadata_bytes:
        table = table.replace_schema_metadata({"padding": "x" * metadata_bytes})
    path = root / KEY
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    return storage, path


@pytest.mark.parametrize("metadata_bytes", [0, 200_000])
def test_a_month_file_s_rows_are_read_from_its_footer_however_long(
    tmp_path: Path, metadata_bytes: int
) -> None:
    """A month file's row count comes from its footer, whether the footer came with the first
    read of the file's end or is longer than that (here ~200 KB of metadata); a day file's
    facts are its frame alone."""
    storage, path = month_archive(tmp_path, rows=7, metadata_bytes=metadata_bytes)
    assert pq.ParquetFile(path).metadata.serialized_size > metadata_bytes
    assert read_file_facts(storage, KEY, "month") == (None, 7)
    assert read_file_facts(storage, KEY, "day") == (None, None)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, 10_000), padded=st.booleans())
def test_a_month_file_cut_anywhere_is_a_problem_with_no_rows(
    tmp_path_factory: pytest.TempPathFactory, cut: int, padded: bool
) -> None:
    """A month file missing any number of its last bytes is told as a problem (its frame is
    no longer whole), with no row count, and reading it never raises."""
    storage, path = month_archive(tmp_path_factory.mktemp("cut"), 40, 100_000 if padded else 0)
    whole = path.read_bytes()
    path.write_bytes(whole[: max(0, len(whole) - 1 - cut)])
    problem, rows = read_file_facts(storage, KEY, "month")
    assert problem is not None
    assert rows is None


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_garbled_month_footer_never_raises(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Any byte of a month file's footer changed: the file is told as whole with a row count,
    or as a problem without one (an unreadable footer), never an exception."""
    storage, path = month_archive(tmp_path_factory.mktemp("garbled"), 40)
    whole = bytearray(path.read_bytes())
    footer = int.from_bytes(whole[-8:-4], "little")
    at = data.draw(st.integers(len(whole) - 8 - footer, len(whole) - 9), label="at")
    whole[at] = data.draw(st.integers(0, 255).filter(lambda b: b != whole[at]), label="byte")
    path.write_bytes(bytes(whole))
    problem, rows = read_file_facts(storage, KEY, "month")
    assert (problem is None and isinstance(rows, int)) or (
        isinstance(problem, str) and rows is None
    )


def _windows(days: list[dt.date], records: int) -> dict[dt.date, list[FinishedWindow]]:
    return {
        day: [
            FinishedWindow(
                DEVICE.uuid,
                DEVICE.type,
                dt.datetime.combine(day, dt.time(), dt.UTC),
                dt.datetime.combine(day, dt.time(2), dt.UTC),
                records,
                records,
                True,
            )
        ]
        for day in days
    }


@pytest.mark.parametrize("rows", [6, 5])
def test_facts_gathered_beforehand_spare_every_file_and_name_each_key(
    tmp_path: Path, rows: int
) -> None:
    """The facts gathered from the checkpoint alone name each file's key by its device type,
    uuid and month; ``damaged_days`` given them opens no file and decides as it does reading
    them (a file short of the rows vouched for damages every in-range day of its month)."""
    storage, _ = month_archive(tmp_path, rows=rows)
    days = [JAN, JAN + dt.timedelta(days=1), JAN + dt.timedelta(days=2)]
    windows = _windows(days, 2)
    ordinals = np.array([day.toordinal() for day in days], np.int32)
    availability = {
        DEVICE: DeviceDays(
            ordinals,
            np.full(3, 2, np.int64),
            (ordinals.astype(np.int64) - 719_163) * 86_400_000 + 3_600_000,
        )
    }

    def finished_for(_uuid: str, day: dt.date) -> list[FinishedWindow]:
        return windows.get(day, [])

    def finished_days(_uuid: str) -> list[int]:
        return ordinals.tolist()

    def whole_days(_uuid: str) -> WholeSlotDays:
        return _no_whole_days()

    facts = facts_of_vouched_files(
        storage, "month", {DEVICE.uuid: DEVICE.type}, finished_days, None, None
    )
    assert isinstance(facts, VouchedFileFacts)
    assert facts.named == {(DEVICE.type, DEVICE.uuid, JAN.toordinal()): KEY}
    assert isinstance(storage, CountingStorage)
    opened = storage.opened
    args = (storage, availability, finished_for, None, None, finished_days, whole_days)
    told = damaged_days(*args, facts)
    assert storage.opened == opened
    assert told == damaged_days(*args)
    assert told == (set() if rows == 6 else {(DEVICE.uuid, day) for day in days})


def _no_whole_days() -> WholeSlotDays:
    return WholeSlotDays(
        np.zeros(0, np.int32),
        np.zeros(0, np.uint16),
        np.zeros(0, np.int64),
        np.zeros(0, np.bool_),
        np.zeros(0, np.int64),
    )


@given(
    offsets=st.lists(st.integers(-70, 400), max_size=25),
    partition=st.sampled_from(["day", "month"]),
    edges=st.tuples(st.none() | st.integers(-80, 420), st.none() | st.integers(-80, 420)),
    hour=st.integers(0, 23),
)
def test_the_files_looked_at_are_those_whose_period_meets_the_range(
    offsets: list[int], partition: str, edges: tuple[int | None, int | None], hour: int
) -> None:
    """The periods whose files are looked at, found from arrays, are those holding a finished
    day whose first day starts before the range ends and whose last day ends after it starts
    (leap years and month ends included)."""
    base = dt.date(2023, 12, 15)
    days = np.array([(base + dt.timedelta(days=o)).toordinal() for o in offsets], np.int64)
    lo, hi = (
        None
        if edge is None
        else dt.datetime.combine(base, dt.time(hour), dt.UTC) + dt.timedelta(days=edge)
        for edge in edges
    )
    periods = {period_of(dt.date.fromordinal(int(o)), partition) for o in days}
    expected = sorted(
        p.first.toordinal()
        for p in periods
        if day_overlaps(p.first, None, hi) and day_overlaps(p.last, lo, None)
    )
    assert _periods_meeting(days, partition, lo, hi).tolist() == expected
