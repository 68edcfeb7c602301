"""What a data file says of itself before planning trusts the checkpoint (``read_file_facts``):
its frame, and a month file's row count from its footer, read with the frame in one open.

A file cut anywhere or with a garbled footer is a problem, never a crash; a footer longer than
the bytes first read is read whole.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.archive.integrity import read_file_facts
from harvester.archive.layout import ARCHIVE_KEY, partition_file_key
from harvester.archive.storage import LocalStorage
from harvester.models import Device, FinishedWindow

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
