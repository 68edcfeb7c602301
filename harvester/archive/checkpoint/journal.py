"""The checkpoint journal: which windows are durable in the archive, and which failed.

Everything lives under ``OUT/_harvest/checkpoint/`` and is written only through the storage
seam with whole-object writes (no append, no rename), so the same code works on object storage::

    snapshot.ckpt                          compacted state up to generation G (a Parquet file,
                                           named so that OUT/**/*.parquet globs never match it)
    seg-<gen>-<seq>-<run_id>.jsonl         one flush each: a header line, then one entry a line

Opening loads the snapshot, replays every segment of a generation above G in (gen, seq) order
(later entries win), then compacts: it writes a new snapshot of generation G' (the highest
replayed) and only then deletes the segments it absorbed. A crash between the two leaves
segments of a generation <= G', which the next open recognises as absorbed and deletes instead
of replaying them over newer state. The run then writes generation G' + 1.

Identity of an entry is ``(device_uuid, start, end)``: a later finished entry replaces an
earlier one and clears a failure; a later failure keeps the earlier finished entry. Times are
stored as int64 epoch milliseconds (windows sit on a whole-second grid).

Nothing on disk is trusted: a segment with a torn or garbage record is loaded up to the damage,
an unreadable snapshot counts as empty (its windows are fetched again; the sink's merge
de-duplicates) and is kept aside as ``snapshot.ckpt.corrupt-<ts>``; each repair is logged
and listed in ``warnings``. A version this code does not know raises
``IncompatibleCheckpointError`` before anything is modified.

Thread-safe: ``record`` is a cheap in-memory append, so a runner may call ``flush`` from a
worker thread (``asyncio.to_thread``) to keep fsyncs and compactions off its event loop.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

import pyarrow as pa
import structlog

from harvester import crashpoints
from harvester.archive.checkpoint import format as fmt
from harvester.archive.checkpoint.state import FinishedState, day_totals, from_rows
from harvester.archive.checkpoint.totals import DayProgress, DayTotals
from harvester.archive.layout import (
    CHECKPOINT_PREFIX,
    CORRUPT_MARK,
    SNAPSHOT_NAME,
    is_temporary,
    parse_segment_name,
    segment_name,
)
from harvester.archive.storage import Storage
from harvester.errors import StorageError
from harvester.models import FailedWindow, FinishedWindow, WholeSlotDays

__all__ = ["CheckpointJournal", "DayProgress", "DayTotals"]

#: Windows recorded since the last fold are held as objects (~400 bytes each); past this many
#: a flush folds them into the compact state.
SETTLE_AFTER_WINDOWS: Final = 50_000

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]")

log = structlog.get_logger(__name__)


@dataclass
class _Loaded:
    """What ``open`` found, decided before anything is modified."""

    finished: FinishedState
    failed: dict[fmt.Identity, FailedWindow]
    generation: int
    warnings: list[str]
    absorbed: list[str]
    leftovers: list[str]
    set_aside: list[tuple[str, bytes]]
    needs_snapshot: bool


def _load(storage: Storage, prefix: str) -> _Loaded:
    snapshot_key = f"{prefix}/{SNAPSHOT_NAME}"
    warnings: list[str] = []
    segments: list[tuple[int, int, str, str]] = []
    leftovers: list[str] = []
    has_snapshot = False
    for key in storage.list_files(prefix):
        name = key[len(prefix) + 1 :]
        segment = parse_segment_name(name)
        if "/" in name:
            continue  # a nested folder is another journal's (e.g. one per shard)
        if is_temporary(key):
            leftovers.append(key)
        elif key == snapshot_key:
            has_snapshot = True
        elif segment is not None:
            segments.append((*segment, key))
        elif CORRUPT_MARK not in name:
            warnings.append(f"unexpected file {key} in the checkpoint folder, left alone")
    set_aside: list[tuple[str, bytes]] = []
    snapshot_generation = -1
    state = FinishedState.empty()
    failed: dict[fmt.Identity, FailedWindow] = {}
    outdated = False
    if has_snapshot:
        blob = storage.read_bytes(snapshot_key)
        problem: str | None = None
        snapshot = fmt.read_snapshot(snapshot_key, blob)
        if isinstance(snapshot, str):
            problem = snapshot
        else:
            try:
                for table in snapshot.batches():
                    state = _fold(state, failed, table)
            except fmt.UntrustedSnapshot as exc:
                problem = str(exc)
                state, failed = FinishedState.empty(), {}
            else:
                snapshot_generation = snapshot.generation
                outdated = snapshot.version != fmt.SNAPSHOT_VERSION
        if problem is not None:
            warnings.append(
                f"checkpoint snapshot {snapshot_key} cannot be trusted ({problem}): its windows "
                "will be fetched again; the file is kept aside"
            )
            set_aside.append((snapshot_key, blob))
    segments.sort()
    stale = [key for generation, _, _, key in segments if generation <= snapshot_generation]
    live = [(gen, key) for gen, _, _, key in segments if gen > snapshot_generation]
    blobs = [(key, _read_segment(storage, key)) for _, key in live]
    decoded = fmt.decode_segments([(key, blob) for key, blob in blobs if blob is not None])
    state = _fold(state, failed, decoded.rows)
    for key, kept, problem_text in decoded.damaged:
        warnings.append(
            f"checkpoint segment {key} is damaged ({problem_text}): "
            f"kept the {kept} records before the damage"
        )
        set_aside.append((key, dict(blobs)[key] or b""))
    generation = max([snapshot_generation, 0, *(gen for gen, _ in live)])
    return _Loaded(
        finished=state,
        failed=failed,
        generation=generation,
        warnings=warnings,
        absorbed=[key for _, key in live] + stale,
        leftovers=leftovers,
        set_aside=set_aside,
        needs_snapshot=bool(live) or outdated or any(key == snapshot_key for key, _ in set_aside),
    )


def _fold(
    state: FinishedState, failed: dict[fmt.Identity, FailedWindow], table: pa.Table
) -> FinishedState:
    """``state`` with the entries of ``table`` (later wins); ``failed`` is updated in place:
    a failure stays until a later finished entry of its window clears it."""
    if table.num_rows == 0:
        return state
    batch, batch_failed = from_rows(table)
    cleared = [i for i in failed if i not in batch_failed and batch.holds(*i)]
    for ident in cleared:
        del failed[ident]
    failed.update(batch_failed)
    return state.absorb(batch)


def _read_segment(storage: Storage, key: str) -> bytes | None:
    """A segment's bytes; None if it vanished since listing (a run compacted meanwhile)."""
    try:
        return storage.read_bytes(key)
    except StorageError:
        if storage.exists(key):
            raise
        return None


class CheckpointJournal:
    """The durable record of finished and failed windows; see the module docstring."""

    def __init__(
        self,
        storage: Storage,
        run_id: str,
        prefix: str,
        loaded: _Loaded,
        flush_interval_s: float,
        compact_after_segments: int,
    ) -> None:
        self.warnings: list[str] = loaded.warnings
        self._storage = storage
        self._run_id = _UNSAFE_IN_NAME.sub("_", run_id) or "run"
        self._prefix = prefix
        self._finished = loaded.finished
        self._failed = loaded.failed
        self._generation = loaded.generation + 1
        self._flush_interval_s = flush_interval_s
        self._compact_after_segments = compact_after_segments
        self._recent: dict[fmt.Identity, FinishedWindow] = {}
        self._recent_by_day: dict[tuple[str, dt.date], dict[fmt.Identity, FinishedWindow]] = {}
        self._buffer: list[fmt.Entry] = []
        self._written: list[str] = []
        self._seq = 0
        self._last_flush: float | None = None
        self._days: DayTotals | None = None
        self._state_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._settle_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        storage: Storage,
        run_id: str,
        *,
        prefix: str = CHECKPOINT_PREFIX,
        compact: bool = True,
        flush_interval_s: float = 1.0,
        compact_after_segments: int = 256,
    ) -> CheckpointJournal:
        """Load and (unless ``compact=False``, for readers such as ``status``) compact.

        Raises ``IncompatibleCheckpointError`` (nothing modified) for a foreign version, and
        ``StorageError`` when the storage fails. ``compact_after_segments`` bounds how many
        segments a crash can leave for the next open to replay.
        """
        started = time.perf_counter()
        loaded = _load(storage, prefix)
        journal = cls(storage, run_id, prefix, loaded, flush_interval_s, compact_after_segments)
        for warning in loaded.warnings:
            log.warning("checkpoint_repaired", problem=warning)
        if compact:
            journal._repair(loaded)
        log.info(
            "checkpoint_opened",
            finished=len(loaded.finished),
            failed=len(loaded.failed),
            segments_absorbed=len(loaded.absorbed),
            seconds=round(time.perf_counter() - started, 3),
        )
        return journal

    @classmethod
    def open_all(cls, storage: Storage, prefixes: Sequence[str]) -> CheckpointJournal:
        """A read-only view of several journals at once (every shard's, for ``status``).

        Nothing is compacted or written. A window found in more than one journal (a dataset
        harvested again with another ``--shard`` N) counts once, the last prefix winning.
        """
        finished = FinishedState.empty()
        failed: dict[fmt.Identity, FailedWindow] = {}
        warnings: list[str] = []
        for prefix in prefixes:
            loaded = _load(storage, prefix)
            warnings += loaded.warnings
            if len(prefixes) == 1:
                finished, failed = loaded.finished, loaded.failed
                break
            # Each journal's failures are current, so they follow its finished windows.
            finished = finished.absorb(loaded.finished)
            failed = {i: f for i, f in failed.items() if not loaded.finished.holds(*i)}
            failed.update(loaded.failed)
        merged = _Loaded(
            finished=finished,
            failed=failed,
            generation=0,
            warnings=warnings,
            absorbed=[],
            leftovers=[],
            set_aside=[],
            needs_snapshot=False,
        )
        return cls(storage, "read-only", CHECKPOINT_PREFIX, merged, 1.0, 256)

    def _repair(self, loaded: _Loaded) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        for key, blob in loaded.set_aside:
            self._storage.write_file(f"{key}{CORRUPT_MARK}{stamp}", _writer(blob))
        if loaded.needs_snapshot:
            self._write_snapshot(loaded.generation)
            crashpoints.hit("compacted")
        for key in loaded.absorbed + loaded.leftovers:
            self._storage.delete(key)

    def _write_snapshot(self, generation: int) -> None:
        self._settle()
        with self._state_lock:
            finished, failures = self._finished, list(self._failed.values())

        def rows() -> Iterator[pa.Table]:
            yield from finished.row_batches()
            yield fmt.table_from_entries(failures)

        self._storage.write_file(
            f"{self._prefix}/{SNAPSHOT_NAME}",
            lambda handle: fmt.write_snapshot(handle, rows(), generation),
        )

    def _settle(self) -> None:
        """Fold the windows recorded since the last fold into the compact state.

        The fold runs without the state lock (a run's ``record`` never waits for it); windows
        recorded meanwhile stay in ``_recent`` for the next fold.
        """
        with self._settle_lock:
            with self._state_lock:
                if not self._recent:
                    return
                batch, base = list(self._recent.values()), self._finished
            newer, _ = from_rows(fmt.table_from_entries(batch))
            folded = base.absorb(newer)
            with self._state_lock:
                self._finished = folded
                for window in batch:
                    ident = fmt.identity(window)
                    if self._recent.get(ident) is window:
                        del self._recent[ident]
                        day = (window.device_uuid, window.day)
                        by_day = self._recent_by_day[day]
                        del by_day[ident]
                        if not by_day:
                            del self._recent_by_day[day]
                self._days = None

    # ------------------------------------------------------------ queries

    def finished_for(self, uuid: str, day: dt.date) -> Sequence[FinishedWindow]:
        """The finished windows of one device's UTC day, by (start, end)."""
        with self._state_lock:
            stored = self._finished.windows_of(uuid, day)
            recent = self._recent_by_day.get((uuid, day))
            if not recent:
                return stored
            merged = {fmt.identity(window): window for window in stored} | recent
        return sorted(merged.values(), key=lambda w: (w.start, w.end))

    def finished_days(self, uuid: str) -> Collection[int]:
        """The UTC days (``date.toordinal``) of one device with finished windows."""
        with self._state_lock:
            stored = self._finished.days_of(uuid)
            recent = {day.toordinal() for owner, day in self._recent_by_day if owner == uuid}
        return set(stored.tolist()) | recent if recent else stored.tolist()

    def device_types(self) -> dict[str, str]:
        """The type of each device with finished windows (uuid → type)."""
        with self._state_lock:
            types: dict[str, str] = dict(self._finished.device_types())
            types.update((w.device_uuid, w.device_type) for w in self._recent.values())
        return types

    def whole_days_of(self, uuid: str) -> WholeSlotDays:
        """One device's whole-slot days (see ``slots``), but none with windows recorded since
        the last fold: those are only answered by ``finished_for``."""
        with self._state_lock:
            whole = self._finished.whole_days_of(uuid)
            recent = [day.toordinal() for owner, day in self._recent_by_day if owner == uuid]
        return whole.without(recent)

    def failed(self) -> Sequence[FailedWindow]:
        """Windows whose last attempt failed and that have not finished since."""
        with self._state_lock:
            return sorted(self._failed.values(), key=fmt.identity)

    def day_totals(self) -> DayTotals:
        """Per device and UTC day (sorted): finished windows, records, day count, failures."""
        self._settle()
        with self._state_lock:
            if self._days is None:
                self._days = day_totals(self._finished, self._failed)
            return self._days

    def days(self) -> Sequence[DayProgress]:
        """``day_totals`` as objects, for small archives and tests."""
        return self.day_totals().progress()

    # ------------------------------------------------------------ recording

    def record(
        self, finished: Sequence[FinishedWindow] = (), failed: Sequence[FailedWindow] = ()
    ) -> None:
        """Buffer entries (finished first, then failed); durable after the next flush."""
        with self._state_lock:
            for window in finished:
                ident = fmt.identity(window)
                self._recent[ident] = window
                self._recent_by_day.setdefault((window.device_uuid, window.day), {})[ident] = window
                self._failed.pop(ident, None)
                self._buffer.append(window)
            for failure in failed:
                self._failed[fmt.identity(failure)] = failure
                self._buffer.append(failure)
            self._days = None

    def flush(self) -> None:
        """Write the buffered entries as one new segment; no-op when there are none.

        On a storage error the entries stay buffered (the next flush retries) and the error
        is raised. Every ``compact_after_segments`` segments, the state is compacted.
        """
        with self._flush_lock:
            with self._state_lock:
                entries, self._buffer = self._buffer, []
            if not entries:
                return
            key = f"{self._prefix}/{segment_name(self._generation, self._seq, self._run_id)}"
            blob = fmt.encode_segment(self._run_id, self._generation, self._seq, entries)
            try:
                self._storage.write_file(key, _writer(blob))
            except BaseException:
                with self._state_lock:
                    self._buffer[:0] = entries
                raise
            self._seq += 1
            self._written.append(key)
            if len(self._written) >= self._compact_after_segments:
                self._compact()
            elif len(self._recent) >= SETTLE_AFTER_WINDOWS:
                self._settle()

    def _compact(self) -> None:
        self._write_snapshot(self._generation)
        for key in self._written:
            self._storage.delete(key)
        log.info("checkpoint_compacted", generation=self._generation, segments=len(self._written))
        self._written.clear()
        self._generation += 1
        self._seq = 0

    def maybe_flush(self, now: float) -> None:
        """Flush if ``flush_interval_s`` passed since the last flush (``now``: a monotonic clock).

        After a quiet spell the first entry is flushed at once; under load, entries are
        batched into one segment per interval.
        """
        last = self._last_flush
        if last is not None and now - last < self._flush_interval_s:
            return
        with self._state_lock:
            if not self._buffer:
                return
        self._last_flush = now
        self.flush()

    def close(self) -> None:
        self.flush()


def _writer(blob: bytes) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(blob)

    return write
