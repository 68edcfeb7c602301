"""The checkpoint's compact form: whole-slot days as one row, older snapshots, folding."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from harvester.archive.checkpoint import format as fmt
from harvester.archive.checkpoint import journal as journal_module
from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.layout import CHECKPOINT_PREFIX
from harvester.archive.storage import LocalStorage
from harvester.models import WINDOW, FinishedWindow

DAY = dt.date(2024, 3, 10)
MIDNIGHT = dt.datetime.combine(DAY, dt.time(), dt.UTC)


def window(uuid: str, day: int, slot: int, *, records: int = 5, count: int = 60) -> FinishedWindow:
    start = MIDNIGHT + dt.timedelta(days=day) + slot * WINDOW
    return FinishedWindow(uuid, "FMD", start, start + WINDOW, records, count, True)


def whole_days(uuids: list[str], days: int) -> list[FinishedWindow]:
    return [
        window(uuid, day, slot, records=slot + day)
        for uuid in uuids
        for day in range(days)
        for slot in range(12)
    ]


def snapshot_rows(root: Path) -> pa.Table:
    return pq.read_table(root / CHECKPOINT_PREFIX / "snapshot.ckpt")


def open_journal(storage: LocalStorage) -> CheckpointJournal:
    return CheckpointJournal.open(storage, "test-run")


def test_whole_slot_days_are_one_snapshot_row_each(tmp_path: Path) -> None:
    """Days of whole slots with one count are written as one row; other days as windows."""
    storage = LocalStorage(tmp_path)
    journal = open_journal(storage)
    clipped_start = MIDNIGHT + dt.timedelta(days=5, minutes=30)
    clipped = FinishedWindow("a", "FMD", clipped_start, clipped_start + WINDOW / 2, 3, 9, False)
    journal.record([*whole_days(["a", "b"], 3), clipped])
    journal.close()
    open_journal(storage).close()
    rows = snapshot_rows(tmp_path)
    kinds = pc.value_counts(rows["kind"]).to_pylist()
    assert {k["values"]: k["counts"] for k in kinds} == {"day": 6, "fin": 1}
    again = open_journal(storage)
    expected = [w for w in whole_days(["a"], 3) if w.day == DAY + dt.timedelta(days=2)]
    assert again.finished_for("a", DAY + dt.timedelta(days=2)) == expected
    assert again.finished_for("a", clipped.day) == [clipped]


def test_a_version_1_snapshot_is_read_and_rewritten_compactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot of windows (format 1) loads in small batches — days split across batches
    included — and the next open rewrites it in the current format, meaning unchanged."""
    storage = LocalStorage(tmp_path)
    windows = whole_days(["a", "b"], 4)
    metadata = {b"harvester.checkpoint_version": b"1", b"harvester.checkpoint_generation": b"3"}
    folder = tmp_path / CHECKPOINT_PREFIX
    folder.mkdir(parents=True)
    table = fmt.table_from_entries(windows).replace_schema_metadata(metadata)
    pq.write_table(table, folder / "snapshot.ckpt", row_group_size=7)
    monkeypatch.setattr(fmt, "SNAPSHOT_BATCH_ROWS", 5)
    journal = open_journal(storage)
    assert journal.warnings == []
    rewritten = snapshot_rows(tmp_path)
    assert rewritten.schema.metadata[b"harvester.checkpoint_version"] == b"2"
    assert rewritten.num_rows == 8
    for day in range(4):
        on = DAY + dt.timedelta(days=day)
        assert journal.finished_for("b", on) == [
            w for w in windows if w.device_uuid == "b" and w.day == on
        ]


def test_a_day_row_whose_counts_do_not_add_up_is_not_trusted(tmp_path: Path) -> None:
    """A whole-day row whose slot records do not sum to its total: the snapshot is set aside."""
    storage = LocalStorage(tmp_path)
    journal = open_journal(storage)
    journal.record(whole_days(["a"], 1))
    journal.close()
    open_journal(storage).close()
    path = tmp_path / CHECKPOINT_PREFIX / "snapshot.ckpt"
    rows = pq.read_table(path)
    records = pc.add(rows["records"], 1)
    pq.write_table(
        rows.set_column(rows.schema.get_field_index("records"), "records", records), path
    )
    reopened = open_journal(storage)
    assert "cannot be trusted (it holds invalid records)" in reopened.warnings[0]
    assert reopened.finished_for("a", DAY) == []


def test_a_flush_folds_recent_windows_into_the_compact_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SETTLE_AFTER_WINDOWS recorded windows, a flush folds them: the day becomes a
    whole-slot day at once (no object per window left waiting for the next compaction)."""
    monkeypatch.setattr(journal_module, "SETTLE_AFTER_WINDOWS", 12)
    journal = open_journal(LocalStorage(tmp_path))
    journal.record(whole_days(["a"], 1))
    assert len(journal.whole_days_of("a").days) == 0
    journal.flush()
    whole = journal.whole_days_of("a")
    assert whole.days.tolist() == [DAY.toordinal()]
    assert whole.mask.tolist() == [0xFFF]
    assert whole.records.tolist() == [sum(range(12))]


def test_a_later_window_breaks_up_a_whole_day_and_wins(tmp_path: Path) -> None:
    """A window fetched again with another count turns the whole day back into windows; the
    new one replaces its slot, the others keep theirs."""
    storage = LocalStorage(tmp_path)
    journal = open_journal(storage)
    journal.record(whole_days(["a"], 1))
    journal.close()
    journal = open_journal(storage)
    newer = window("a", 0, 4, records=99, count=70)
    journal.record([newer])
    assert len(journal.day_totals()) == 1
    assert journal.whole_days_of("a").days.tolist() == []
    expected = [newer if w.start == newer.start else w for w in whole_days(["a"], 1)]
    assert journal.finished_for("a", DAY) == expected
    journal.close()
    assert open_journal(storage).finished_for("a", DAY) == expected
