"""The checkpoint journal: semantics, compaction, crash safety, damage, versions, scale paths."""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from harvester.archive.checkpoint import format as fmt
from harvester.archive.checkpoint.journal import CheckpointJournal, DayProgress
from harvester.archive.layout import CHECKPOINT_PREFIX
from harvester.archive.storage import LocalStorage
from harvester.errors import IncompatibleCheckpointError, StorageError
from harvester.models import WINDOW, DeviceType, FailedWindow, FinishedWindow

DAY = dt.date(2024, 3, 10)
TYPES: dict[str, DeviceType] = {"dev-a": "SPOD", "dev-b": "RAMP", "dev-c": "FMD"}


def slot(day_offset: int, index: int) -> dt.datetime:
    midnight = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    return midnight + dt.timedelta(days=day_offset) + index * WINDOW


def done(
    uuid: str = "dev-a",
    index: int = 0,
    *,
    day_offset: int = 0,
    records: int = 7200,
    day_count: int = 86_400,
    sealed: bool = True,
    hours: int = 2,
) -> FinishedWindow:
    start = slot(day_offset, index)
    end = start + dt.timedelta(hours=hours)
    return FinishedWindow(uuid, TYPES[uuid], start, end, records, day_count, sealed)


def failure(
    uuid: str = "dev-a", index: int = 0, *, day_offset: int = 0, reason: str = "HTTP 503"
) -> FailedWindow:
    start = slot(day_offset, index)
    return FailedWindow(uuid, TYPES[uuid], start, start + WINDOW, reason, 8)


def checkpoint_files(root: Path) -> dict[str, bytes]:
    folder = root / CHECKPOINT_PREFIX
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def segment_paths(root: Path) -> list[Path]:
    return sorted((root / CHECKPOINT_PREFIX).glob("seg-*.jsonl"))


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path)


def reopen(storage: LocalStorage, **options: int) -> CheckpointJournal:
    return CheckpointJournal.open(storage, "test-run", **options)  # type: ignore[arg-type]  # only int options are passed


# ---------------------------------------------------------------- semantics


def test_round_trip_restores_finished_failed_and_days(storage: LocalStorage) -> None:
    """What is recorded and closed is exactly what the next open sees."""
    journal = reopen(storage)
    windows = [done("dev-a", 0), done("dev-a", 1, records=10, sealed=False), done("dev-b", 3)]
    journal.record(windows, [failure("dev-b", 4, reason="timeout")])
    journal.close()
    again = reopen(storage)
    assert again.finished_for("dev-a", DAY) == windows[:2]
    assert again.finished_for("dev-b", DAY) == windows[2:]
    assert again.finished_for("dev-a", DAY + dt.timedelta(days=1)) == []
    assert again.finished_for("dev-unknown", DAY) == []
    assert again.failed() == [failure("dev-b", 4, reason="timeout")]
    assert again.days() == journal.days()
    assert again.warnings == []


def test_later_finished_entry_replaces_the_earlier_one(storage: LocalStorage) -> None:
    """Same identity recorded twice, in separate segments: the later entry wins on reopen."""
    journal = reopen(storage)
    journal.record([done(records=5, day_count=50, sealed=False)])
    journal.flush()
    journal.record([done(records=7, day_count=70, sealed=True)])
    journal.flush()
    assert journal.finished_for("dev-a", DAY) == [done(records=7, day_count=70)]
    assert reopen(storage).finished_for("dev-a", DAY) == [done(records=7, day_count=70)]


def test_clipped_and_full_windows_are_distinct_identities(storage: LocalStorage) -> None:
    """A clipped piece and the full slot with the same start are both kept, ordered by end."""
    journal = reopen(storage)
    journal.record([done(hours=2), done(hours=1, records=3)])
    journal.close()
    assert reopen(storage).finished_for("dev-a", DAY) == [done(hours=1, records=3), done()]


def test_finished_after_failed_clears_the_failure(storage: LocalStorage) -> None:
    """A window that failed in one run and finished in a later one is no longer failed."""
    journal = reopen(storage)
    journal.record(failed=[failure(index=2)])
    journal.close()
    second = reopen(storage)
    assert second.failed() == [failure(index=2)]
    second.record([done(index=2)])
    assert second.failed() == []
    second.close()
    third = reopen(storage)
    assert third.failed() == []
    assert third.finished_for("dev-a", DAY) == [done(index=2)]


def test_failure_after_finished_keeps_the_finished_entry(storage: LocalStorage) -> None:
    """A later failure of a finished window is reported but does not forget the durable data."""
    journal = reopen(storage)
    journal.record([done(index=1)])
    journal.flush()
    journal.record(failed=[failure(index=1)])
    journal.close()
    again = reopen(storage)
    assert again.finished_for("dev-a", DAY) == [done(index=1)]
    assert again.failed() == [failure(index=1)]


def test_days_aggregates_per_device_and_day(storage: LocalStorage) -> None:
    """days(): windows, record sum, newest day count, failures; failure-only days included."""
    journal = reopen(storage)
    journal.record(
        [
            done("dev-a", 0, records=100, day_count=300),
            done("dev-a", 1, records=150, day_count=400),
            done("dev-a", 0, day_offset=1, records=9, day_count=9),
            done("dev-b", 5, records=1, day_count=1),
        ],
        [failure("dev-a", 2), failure("dev-c", 0, day_offset=2)],
    )
    journal.flush()
    expected = [
        DayProgress("dev-a", "SPOD", DAY, 2, 250, 400, 1),
        DayProgress("dev-a", "SPOD", DAY + dt.timedelta(days=1), 1, 9, 9, 0),
        DayProgress("dev-b", "RAMP", DAY, 1, 1, 1, 0),
        DayProgress("dev-c", "FMD", DAY + dt.timedelta(days=2), 0, 0, 0, 1),
    ]
    assert journal.days() == expected
    assert reopen(storage).days() == expected


def test_finished_days_names_each_device_s_days_with_finished_windows(
    storage: LocalStorage,
) -> None:
    """finished_days(uuid): the day ordinals with a finished window, whether the entries are
    still in memory or reopened from the journal; failure-only days and other devices' days
    are not among them."""
    journal = reopen(storage)
    journal.record(
        [done("dev-a", 0), done("dev-a", 3, day_offset=2), done("dev-b", 5, day_offset=1)],
        [failure("dev-a", 2, day_offset=1)],
    )
    expected = {DAY.toordinal(), DAY.toordinal() + 2}
    assert set(journal.finished_days("dev-a")) == expected
    journal.flush()
    reopened = reopen(storage)
    assert set(reopened.finished_days("dev-a")) == expected
    assert set(reopened.finished_days("dev-b")) == {DAY.toordinal() + 1}
    assert not reopened.finished_days("dev-c")


# ---------------------------------------------------------------- compaction and crashes


def test_open_compacts_into_a_snapshot_and_removes_segments(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """Opening absorbs segments into snapshot.ckpt, deletes them, and keeps the state."""
    journal = reopen(storage)
    for index in range(3):
        journal.record([done(index=index)], [failure("dev-b", index)])
        journal.flush()
    assert len(segment_paths(tmp_path)) == 3
    again = reopen(storage)
    assert list(checkpoint_files(tmp_path)) == ["snapshot.ckpt"]
    assert again.finished_for("dev-a", DAY) == [done(index=i) for i in range(3)]
    assert len(again.failed()) == 3
    assert reopen(storage).days() == again.days()


def test_flush_compacts_after_the_configured_number_of_segments(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """During a run, every N segments become the snapshot, so a crash leaves at most N."""
    journal = reopen(storage, compact_after_segments=2)
    journal.record([done(index=0)])
    journal.flush()
    journal.record([done(index=1)])
    journal.flush()
    assert list(checkpoint_files(tmp_path)) == ["snapshot.ckpt"]
    journal.record([done(index=0, records=1)])
    journal.flush()
    assert len(segment_paths(tmp_path)) == 1
    assert reopen(storage).finished_for("dev-a", DAY) == [done(index=0, records=1), done(index=1)]


class _Crash(Exception):
    """Stands in for the process dying at a chosen storage call."""


class CrashingStorage(LocalStorage):
    """LocalStorage that 'dies' at the first delete, or at a chosen write."""

    def __init__(self, root: Path, *, on_delete: bool = False, fail_writes: int = 0) -> None:
        super().__init__(root)
        self.on_delete = on_delete
        self.fail_writes = fail_writes

    def delete(self, key: str) -> None:
        if self.on_delete:
            raise _Crash(key)
        super().delete(key)

    def write_file(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise StorageError(f"cannot write {key}: the disk is full")
        super().write_file(key, write)


def test_crash_between_snapshot_write_and_segment_deletion_is_idempotent(tmp_path: Path) -> None:
    """Segments left behind by a crash after the snapshot was written are not replayed again."""
    storage = LocalStorage(tmp_path)
    journal = reopen(storage)
    journal.record([done(records=5)])
    journal.flush()
    journal.record([done(records=7)])
    journal.flush()
    with pytest.raises(_Crash):
        reopen(CrashingStorage(tmp_path, on_delete=True))
    assert len(segment_paths(tmp_path)) == 2
    again = reopen(storage)
    assert again.finished_for("dev-a", DAY) == [done(records=7)]
    assert again.warnings == []
    assert list(checkpoint_files(tmp_path)) == ["snapshot.ckpt"]
    again.record([done(records=9)])
    again.close()
    assert reopen(storage).finished_for("dev-a", DAY) == [done(records=9)]


def test_segment_already_in_the_snapshot_is_deleted_not_replayed(tmp_path: Path) -> None:
    """An absorbed segment that survived (e.g. a lost delete) never overrides newer state."""
    storage = LocalStorage(tmp_path)
    journal = reopen(storage)
    journal.record([done(records=5)])
    journal.flush()
    (old_segment,) = segment_paths(tmp_path)
    old_bytes = old_segment.read_bytes()
    journal = reopen(storage)
    journal.record([done(records=7)])
    journal.close()
    reopen(storage)
    old_segment.write_bytes(old_bytes)
    again = reopen(storage)
    assert again.finished_for("dev-a", DAY) == [done(records=7)]
    assert list(checkpoint_files(tmp_path)) == ["snapshot.ckpt"]


def test_crash_during_in_run_compaction_is_idempotent(tmp_path: Path) -> None:
    """Same as above for the compaction a long run does between flushes."""
    crashing = CrashingStorage(tmp_path)
    journal = reopen(crashing, compact_after_segments=2)
    journal.record([done(records=5)])
    journal.flush()
    journal.record([done(records=7)])
    crashing.on_delete = True
    with pytest.raises(_Crash):
        journal.flush()
    assert reopen(LocalStorage(tmp_path)).finished_for("dev-a", DAY) == [done(records=7)]


def test_failed_flush_keeps_entries_buffered(tmp_path: Path) -> None:
    """A storage error in flush is raised, and the entries are written by the next flush."""
    crashing = CrashingStorage(tmp_path, fail_writes=1)
    journal = reopen(crashing)
    journal.record([done(index=0)])
    with pytest.raises(StorageError, match="disk is full"):
        journal.flush()
    journal.record([done(index=1)])
    journal.flush()
    assert reopen(LocalStorage(tmp_path)).finished_for("dev-a", DAY) == [
        done(index=0),
        done(index=1),
    ]


def test_maybe_flush_batches_by_interval(storage: LocalStorage, tmp_path: Path) -> None:
    """The first entry after a quiet spell is flushed at once, then at most one per interval."""
    journal = reopen(storage)
    journal.maybe_flush(100.0)
    assert segment_paths(tmp_path) == []
    journal.record([done(index=0)])
    journal.maybe_flush(100.0)
    journal.record([done(index=1)])
    journal.maybe_flush(100.5)
    assert len(segment_paths(tmp_path)) == 1
    journal.maybe_flush(101.0)
    assert len(segment_paths(tmp_path)) == 2
    journal.flush()
    assert len(segment_paths(tmp_path)) == 2


def test_read_only_open_modifies_nothing(storage: LocalStorage, tmp_path: Path) -> None:
    """compact=False (for `status`) reads segments and snapshot but writes and deletes nothing."""
    journal = reopen(storage)
    journal.record([done()])
    journal.close()
    reopen(storage)
    journal = reopen(storage)
    journal.record([done(index=1)])
    journal.close()
    (tmp_path / CHECKPOINT_PREFIX / "snapshot.ckpt.corrupt-x").write_bytes(b"old")
    before = checkpoint_files(tmp_path)
    reader = CheckpointJournal.open(storage, "status", compact=False)
    assert reader.finished_for("dev-a", DAY) == [done(), done(index=1)]
    assert checkpoint_files(tmp_path) == before


def test_temporary_leftovers_are_removed_and_foreign_files_kept(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """A crashed write's temporary file is deleted; an unknown file is reported, not touched."""
    folder = tmp_path / CHECKPOINT_PREFIX
    folder.mkdir(parents=True)
    (folder / ".seg-0000000001-00000000-x.jsonl.tmp-abcd").write_bytes(b"half")
    (folder / "notes.txt").write_bytes(b"mine")
    journal = reopen(storage)
    assert set(checkpoint_files(tmp_path)) == {"notes.txt"}
    assert journal.warnings == [
        f"unexpected file {CHECKPOINT_PREFIX}/notes.txt in the checkpoint folder, left alone"
    ]


def test_run_id_is_made_safe_for_file_names(storage: LocalStorage, tmp_path: Path) -> None:
    """A run id with slashes or spaces cannot escape the checkpoint folder."""
    journal = CheckpointJournal.open(storage, "../run 1:x")
    journal.record([done()])
    journal.flush()
    assert [p.name for p in segment_paths(tmp_path)] == ["seg-0000000001-00000000-.._run_1_x.jsonl"]
    assert reopen(storage).finished_for("dev-a", DAY) == [done()]


# ---------------------------------------------------------------- damage


def write_one_segment(storage: LocalStorage, tmp_path: Path, count: int = 3) -> Path:
    """A flushed segment holding dev-a's windows 0..count-1 (the journal is then abandoned)."""
    journal = reopen(storage)
    journal.record([done(index=i) for i in range(count)])
    journal.flush()
    (path,) = segment_paths(tmp_path)
    return path


def reopen_logging(
    storage: LocalStorage,
) -> tuple[CheckpointJournal, list[MutableMapping[str, Any]]]:
    with capture_logs() as logs:
        journal = reopen(storage)
    return journal, [entry for entry in logs if entry["log_level"] == "warning"]


def test_torn_last_record_keeps_the_records_before_it(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """A segment cut inside its last line loads up to it, with a logged warning."""
    path = write_one_segment(storage, tmp_path)
    original = path.read_bytes()
    path.write_bytes(original[:-20])
    journal, warnings = reopen_logging(storage)
    assert journal.finished_for("dev-a", DAY) == [done(index=0), done(index=1)]
    assert len(journal.warnings) == 1
    assert "torn last record at line 4" in journal.warnings[0]
    assert [w["event"] for w in warnings] == ["checkpoint_repaired"]
    kept = [name for name in checkpoint_files(tmp_path) if ".corrupt-" in name]
    assert len(kept) == 1
    assert checkpoint_files(tmp_path)[kept[0]] == original[:-20]
    assert reopen(storage).warnings == []


def test_segment_missing_its_last_lines_is_detected(storage: LocalStorage, tmp_path: Path) -> None:
    """A cut exactly at a line end is caught by the entry count in the header."""
    path = write_one_segment(storage, tmp_path)
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:3]) + b"\n")
    journal = reopen(storage)
    assert journal.finished_for("dev-a", DAY) == [done(index=0), done(index=1)]
    assert "2 records where the header announced 3" in journal.warnings[0]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x00",
        b"not json at all",
        b'{"k":"fin","d":0,"t":"SPOD","s":1,"e":2,"n":true,"c":1,"z":true}',
        b'{"k":"fin","d":0,"t":"SPOD","s":5,"e":2,"n":1,"c":1,"z":true}',
        b'{"k":"fin","d":0,"t":"XXX","s":1,"e":2,"n":1,"c":1,"z":true}',
        b'{"k":"fin","d":0,"t":"SPOD","s":1,"e":2,"n":1,"c":1,"z":true,"extra":1}',
        b'{"k":"what","d":0,"t":"SPOD","s":1,"e":2}',
        b'{"k":"fin","d":7,"t":"SPOD","s":1,"e":2,"n":1,"c":1,"z":true}',
        b'{"k":"fail","d":0,"t":"SPOD","s":1,"e":2,"r":"x","a":-1}',
        b"[1, 2, 3]",
        b"",
    ],
    ids=[
        "nul",
        "text",
        "bool-count",
        "backwards",
        "type",
        "extra-key",
        "kind",
        "device-index",
        "negative-attempts",
        "array",
        "blank",
    ],
)
def test_garbage_record_stops_loading_at_the_damage(
    storage: LocalStorage, tmp_path: Path, garbage: bytes
) -> None:
    """Any record that is not a valid entry: records before it kept, it and later ones not."""
    path = write_one_segment(storage, tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[2] = garbage
    path.write_bytes(b"\n".join(lines))
    journal = reopen(storage)
    assert journal.finished_for("dev-a", DAY) == [done(index=0)]
    assert "at line 3" in journal.warnings[0]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage\n",
        b'{"entries": 1}\n',
        b'{"checkpoint_version": 1, "entries": -1, "devices": []}\n',
        b'{"checkpoint_version": 1, "entries": 0, "devices": [""]}\n',
    ],
    ids=["empty", "garbage-header", "no-version", "bad-count", "bad-devices"],
)
def test_segment_with_no_usable_header_is_skipped(
    storage: LocalStorage, tmp_path: Path, content: bytes
) -> None:
    """An empty or headless segment contributes nothing; the others still load."""
    write_one_segment(storage, tmp_path, count=1)
    (tmp_path / CHECKPOINT_PREFIX / "seg-0000000001-00000005-other.jsonl").write_bytes(content)
    journal = reopen(storage)
    assert journal.finished_for("dev-a", DAY) == [done(index=0)]
    assert len(journal.warnings) == 1
    assert list(checkpoint_files(tmp_path))[-1] == "snapshot.ckpt"


def test_unreadable_snapshot_counts_as_empty_and_is_kept_aside(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """A garbled snapshot: warning, state from later segments only, original bytes preserved."""
    journal = reopen(storage)
    journal.record([done(index=0)])
    journal.close()
    reopen(storage)
    journal = reopen(storage)
    journal.record([done(index=1)])
    journal.close()
    snapshot = tmp_path / CHECKPOINT_PREFIX / "snapshot.ckpt"
    garbled = snapshot.read_bytes()[:-30]
    snapshot.write_bytes(garbled)
    again, warnings = reopen_logging(storage)
    assert again.finished_for("dev-a", DAY) == [done(index=1)]
    assert "snapshot.ckpt cannot be trusted" in again.warnings[0]
    assert len(warnings) == 1
    files = checkpoint_files(tmp_path)
    (aside,) = (name for name in files if name.startswith("snapshot.ckpt.corrupt-"))
    assert files[aside] == garbled
    assert reopen(storage).finished_for("dev-a", DAY) == [done(index=1)]


def test_snapshot_with_foreign_schema_is_not_trusted(storage: LocalStorage, tmp_path: Path) -> None:
    """A Parquet file with the version mark but the wrong columns is treated as unreadable."""
    table = pa.table({"kind": ["fin"]}).replace_schema_metadata(
        {b"harvester.checkpoint_version": b"1", b"harvester.checkpoint_generation": b"3"}
    )
    (tmp_path / CHECKPOINT_PREFIX).mkdir(parents=True)
    pq.write_table(table, tmp_path / CHECKPOINT_PREFIX / "snapshot.ckpt")
    journal = reopen(storage)
    assert journal.days() == []
    assert "cannot be trusted" in journal.warnings[0]


# ---------------------------------------------------------------- versions


def test_newer_segment_version_is_refused_without_modifying_anything(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """A segment from another format version: IncompatibleCheckpointError, files untouched."""
    write_one_segment(storage, tmp_path, count=1)
    reopen(storage)
    folder = tmp_path / CHECKPOINT_PREFIX
    (folder / "seg-0000000009-00000000-future.jsonl").write_bytes(
        b'{"checkpoint_version": 2, "entries": 0}\n'
    )
    (folder / ".seg-x.jsonl.tmp-1234").write_bytes(b"leftover")
    before = checkpoint_files(tmp_path)
    with pytest.raises(IncompatibleCheckpointError, match="incompatible harvester version"):
        reopen(storage)
    assert checkpoint_files(tmp_path) == before


def test_newer_snapshot_version_is_refused_without_modifying_anything(
    storage: LocalStorage, tmp_path: Path
) -> None:
    """A snapshot marked with another version: refused with a hint, nothing changed."""
    write_one_segment(storage, tmp_path, count=1)
    table = fmt.SNAPSHOT_SCHEMA.empty_table().replace_schema_metadata(
        {b"harvester.checkpoint_version": b"3", b"harvester.checkpoint_generation": b"0"}
    )
    pq.write_table(table, tmp_path / CHECKPOINT_PREFIX / "snapshot.ckpt")
    before = checkpoint_files(tmp_path)
    with pytest.raises(IncompatibleCheckpointError, match="use a new --out or the matching"):
        reopen(storage)
    assert checkpoint_files(tmp_path) == before


# ---------------------------------------------------------------- model-based property


UUIDS = ["dev-a", "dev-b"]
IDENTITIES = st.tuples(
    st.sampled_from(UUIDS), st.integers(0, 1), st.integers(0, 2), st.sampled_from([1, 2, 2])
)
Ident = tuple[str, int, int, int]


def _finished_from(ident: Ident, records: int, day_count: int, sealed: bool) -> FinishedWindow:
    uuid, day_offset, index, hours = ident
    return done(
        uuid,
        index,
        day_offset=day_offset,
        records=records,
        day_count=day_count,
        sealed=sealed,
        hours=hours,
    )


def _failed_from(ident: Ident, attempts: int) -> FailedWindow:
    uuid, day_offset, index, hours = ident
    start = slot(day_offset, index)
    end = start + dt.timedelta(hours=hours)
    return FailedWindow(uuid, TYPES[uuid], start, end, f"reason {attempts}", attempts)


OPERATIONS = st.lists(
    st.one_of(
        # Few day counts and mostly whole slots: days often become whole-slot days (one
        # compact row), and later entries break them up again.
        st.builds(
            lambda i, n, c, z: ("fin", _finished_from(i, n, c, z)),
            IDENTITIES,
            st.integers(0, 9),
            st.sampled_from([10, 20]),
            st.booleans(),
        ),
        st.builds(lambda i, a: ("fail", _failed_from(i, a)), IDENTITIES, st.integers(1, 9)),
        st.sampled_from([("flush", None), ("reopen", None), ("crash", None)]),
    ),
    max_size=25,
)


class Model:
    """The journal's meaning as two plain dicts; a crash forgets what was not flushed."""

    def __init__(self) -> None:
        self.finished: dict[tuple[str, dt.datetime, dt.datetime], FinishedWindow] = {}
        self.failed: dict[tuple[str, dt.datetime, dt.datetime], FailedWindow] = {}
        self.durable = (dict(self.finished), dict(self.failed))

    def apply(self, kind: str, entry: FinishedWindow | FailedWindow | None) -> None:
        if isinstance(entry, FinishedWindow):
            key = (entry.device_uuid, entry.start, entry.end)
            self.finished[key] = entry
            self.failed.pop(key, None)
        elif isinstance(entry, FailedWindow):
            self.failed[(entry.device_uuid, entry.start, entry.end)] = entry
        elif kind in ("flush", "reopen"):
            self.durable = (dict(self.finished), dict(self.failed))
        else:
            self.finished, self.failed = dict(self.durable[0]), dict(self.durable[1])

    def days(self) -> list[DayProgress]:
        windows: dict[tuple[str, dt.date], list[FinishedWindow]] = {}
        for window in self.finished.values():
            windows.setdefault((window.device_uuid, window.day), []).append(window)
        failures = Counter((f.device_uuid, f.day) for f in self.failed.values())
        return [
            DayProgress(
                uuid,
                TYPES[uuid],
                day,
                len(windows.get((uuid, day), [])),
                sum(w.records for w in windows.get((uuid, day), [])),
                max((w.day_count for w in windows.get((uuid, day), [])), default=0),
                failures[(uuid, day)],
            )
            for uuid, day in sorted(set(windows) | set(failures))
        ]


def assert_matches(journal: CheckpointJournal, model: Model) -> None:
    for uuid in UUIDS:
        for day_offset in (0, 1):
            day = DAY + dt.timedelta(days=day_offset)
            expected = sorted(
                (w for w in model.finished.values() if (w.device_uuid, w.day) == (uuid, day)),
                key=lambda w: (w.start, w.end),
            )
            assert journal.finished_for(uuid, day) == expected
    assert journal.failed() == sorted(
        model.failed.values(), key=lambda f: (f.device_uuid, f.start, f.end)
    )
    assert journal.days() == model.days()
    for uuid in UUIDS:
        whole = journal.whole_days_of(uuid)
        for ordinal, mask, count, sealed, records in zip(
            whole.days.tolist(),
            whole.mask.tolist(),
            whole.day_count.tolist(),
            whole.sealed.tolist(),
            whole.records.tolist(),
            strict=True,
        ):
            day = dt.date.fromordinal(ordinal)
            windows = journal.finished_for(uuid, day)
            assert [(w.start, w.end) for w in windows] == [
                (slot(day.toordinal() - DAY.toordinal(), i), slot(0, i + 1) + (day - DAY))
                for i in range(12)
                if mask >> i & 1
            ]
            assert {(w.day_count, w.sealed) for w in windows} == {(count, sealed)}
            assert sum(w.records for w in windows) == records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_any_record_flush_reopen_crash_sequence_matches_a_dict_model(
    operations: list[tuple[str, FinishedWindow | FailedWindow | None]],
) -> None:
    """Against a dict model: later wins, finished clears failed, crash loses the unflushed."""
    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder))
        journal = reopen(storage, compact_after_segments=3)
        model = Model()
        for kind, entry in operations:
            model.apply(kind, entry)
            if isinstance(entry, FinishedWindow):
                journal.record([entry])
            elif isinstance(entry, FailedWindow):
                journal.record(failed=[entry])
            elif kind == "flush":
                journal.flush()
            else:
                if kind == "reopen":
                    journal.close()
                journal = reopen(storage, compact_after_segments=3)
                assert journal.warnings == []
            assert_matches(journal, model)


def test_nested_journals_are_independent(storage: LocalStorage, tmp_path: Path) -> None:
    """A journal in a sub-folder (e.g. per shard) is neither read nor touched by the parent."""
    shard = CheckpointJournal.open(storage, "shard", prefix=f"{CHECKPOINT_PREFIX}/shard-1-of-2")
    shard.record([done("dev-b")])
    shard.flush()
    parent = reopen(storage)
    parent.record([done("dev-a")])
    parent.close()
    parent = reopen(storage)
    assert parent.finished_for("dev-b", DAY) == []
    assert parent.warnings == []
    shard = CheckpointJournal.open(storage, "shard", prefix=f"{CHECKPOINT_PREFIX}/shard-1-of-2")
    assert shard.finished_for("dev-b", DAY) == [done("dev-b")]
    assert shard.finished_for("dev-a", DAY) == []


def test_recording_from_threads_while_flushing_loses_nothing(storage: LocalStorage) -> None:
    """record() on several threads while another flushes: every entry is durable after close."""
    journal = reopen(storage, compact_after_segments=4)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            journal.flush()

    def recorder(uuid: str) -> None:
        for day_offset in range(20):
            for index in range(12):
                journal.record([done(uuid, index, day_offset=day_offset)])

    flushing = threading.Thread(target=flusher)
    flushing.start()
    recorders = [threading.Thread(target=recorder, args=(uuid,)) for uuid in TYPES]
    for thread in recorders:
        thread.start()
    for thread in recorders:
        thread.join()
    stop.set()
    flushing.join()
    journal.close()
    days = reopen(storage).days()
    assert len(days) == 60
    assert all(day.windows_finished == 12 for day in days)
