"""WindowPool under errors nobody foresaw: a sink, a parser, a journal, a fetch or the plan
raising at chosen moments. Each must stop the run promptly (no hang, no task left running),
leave the struck day un-checkpointed, keep the counters true and surface as an
``InternalError`` naming the exception and the device-day: never a silent success."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.sink import DayWriteResult, WindowRows
from harvester.archive.storage import LocalStorage
from harvester.errors import InternalError, StorageError
from harvester.fetch import pool as pool_module
from harvester.fetch.pool import PoolStats
from harvester.models import Device, WindowJob
from tests.test_pool import _jobs, _PoolUnderTest, _Server

#: Generous: a pool that hangs fails the test instead of the whole suite's timeout.
NO_HANG_S = 20


class _SinkFailing:
    """Wraps the pool's sink: the ``fail_on``-th day written (from 1) raises ``error``."""

    def __init__(self, under_test: _PoolUnderTest, fail_on: int, error: Exception) -> None:
        self._sink = under_test.pool._sink
        self._fail_on = fail_on
        self._error = error
        self.calls = 0
        under_test.pool._sink = self  # type: ignore[assignment]  # a duck-typed stand-in

    def write_day(
        self, device: Device, day: dt.date, windows: Sequence[WindowRows]
    ) -> DayWriteResult:
        self.calls += 1
        if self.calls == self._fail_on:
            raise self._error
        return self._sink.write_day(device, day, windows)


async def _run_expecting(under_test: _PoolUnderTest, jobs: list[WindowJob]) -> InternalError:
    with pytest.raises(InternalError) as caught:
        await asyncio.wait_for(under_test.run(jobs), timeout=NO_HANG_S)
    return caught.value


def _checkpointed_devices(tmp_path: Path) -> set[str]:
    journal = CheckpointJournal.open(LocalStorage(tmp_path), "reader", compact=False)
    return {day.device_uuid for day in journal.days() if day.windows_finished}


def _assert_counters_add_up(stats: PoolStats, planned: int) -> None:
    assert stats.windows_total == planned
    assert stats.windows_done + stats.windows_failed + stats.windows_left == planned
    assert stats.windows_left > 0


async def test_a_sink_error_on_the_first_day_stops_the_run_and_names_the_day(
    tmp_path: Path,
) -> None:
    """A non-harvester exception in the first day's write (a pyarrow error, a bug) is raised
    as an InternalError naming the device and day, with the original chained; that day is
    not checkpointed, and the counters say the run left windows for the next one."""
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=2, days_in_flight=2)
    _SinkFailing(under_test, fail_on=1, error=ValueError("bad column"))
    jobs = _jobs(days=6, windows_per_day=2)
    error = await _run_expecting(under_test, jobs)
    assert "ValueError" in str(error)
    assert "bad column" in str(error)
    assert "day 2024-03-01" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert "1000" not in _checkpointed_devices(tmp_path)
    _assert_counters_add_up(under_test.pool.stats, len(jobs))


async def test_a_sink_error_mid_run_keeps_the_days_written_before_it(tmp_path: Path) -> None:
    """The third day's write raises: the two days written before it stay checkpointed, the
    third is not, and the run still ends with an InternalError naming the third device."""
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=1, days_in_flight=1)
    _SinkFailing(under_test, fail_on=3, error=MemoryError())
    error = await _run_expecting(under_test, _jobs(days=8, windows_per_day=1))
    assert "MemoryError" in str(error)
    assert "device 1002" in str(error)
    assert _checkpointed_devices(tmp_path) == {"1000", "1001"}
    _assert_counters_add_up(under_test.pool.stats, 8)


async def test_a_sink_error_during_a_drain_is_not_reported_as_an_interrupt(
    tmp_path: Path,
) -> None:
    """A stop (as on SIGINT) arrives while the first windows are in flight; the drain's day
    write then raises. The run does not end as a clean interrupt: the error is raised."""
    server = _Server(hold_back=True)
    under_test = _PoolUnderTest(tmp_path, server, concurrency=4, days_in_flight=2)
    _SinkFailing(under_test, fail_on=1, error=KeyError("schema"))
    run = asyncio.create_task(
        asyncio.wait_for(under_test.run(_jobs(days=4, windows_per_day=2)), NO_HANG_S)
    )
    await asyncio.wait_for(server.held_back.wait(), NO_HANG_S)
    under_test.pool._stop.set()
    server.release.set()
    with pytest.raises(InternalError, match="KeyError"):
        await run
    _assert_counters_add_up(under_test.pool.stats, 8)


async def test_a_failing_final_flush_is_raised(tmp_path: Path) -> None:
    """Every day is written, but saving the checkpoint at the end raises a non-harvester
    exception: the run raises an InternalError saying the checkpoint was being saved."""
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=2, days_in_flight=2)
    journal = under_test.journal
    # Only the final flush: the pool's periodic ones go through maybe_flush.
    journal.maybe_flush = lambda now: None  # type: ignore[method-assign]

    def broken_flush() -> None:
        raise RuntimeError("disk controller gone")

    journal.flush = broken_flush  # type: ignore[method-assign]
    with pytest.raises(InternalError, match="saving the checkpoint") as caught:
        await asyncio.wait_for(under_test.pool.run(_jobs(days=3, windows_per_day=1)), NO_HANG_S)
    assert "disk controller gone" in str(caught.value)
    under_test.executor.shutdown()


async def test_a_storage_error_in_the_final_flush_keeps_its_class(tmp_path: Path) -> None:
    """A StorageError (disk full) while saving the checkpoint is raised as such (exit 2),
    not turned into an InternalError."""
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=2, days_in_flight=2)
    journal = under_test.journal
    journal.maybe_flush = lambda now: None  # type: ignore[method-assign]

    def full_disk() -> None:
        raise StorageError("no space left on device")

    journal.flush = full_disk  # type: ignore[method-assign]
    with pytest.raises(StorageError, match="no space"):
        await asyncio.wait_for(under_test.pool.run(_jobs(days=2, windows_per_day=1)), NO_HANG_S)
    under_test.executor.shutdown()


async def test_a_parser_error_leaves_its_day_unwritten_and_names_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parser raises an unforeseen exception for one window (device 1001): the run stops
    with an InternalError naming that window; device 1001's day is neither written to a file
    nor checkpointed, although its other window was fetched."""
    real_parse = pool_module.parse_window
    calls: list[int] = []

    def parse(body: bytes) -> Any:
        calls.append(1)
        if b'"1001' in body and b"T02:" in body:
            raise IndexError("parser bug")
        return real_parse(body)

    monkeypatch.setattr(pool_module, "parse_window", parse)
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=1, days_in_flight=1)
    error = await _run_expecting(under_test, _jobs(days=4, windows_per_day=2))
    assert "IndexError" in str(error)
    assert "device 1001 day 2024-03-01 window 02:00-04:00" in str(error)
    assert "1001" not in _checkpointed_devices(tmp_path)
    written = await asyncio.to_thread(lambda: list(tmp_path.glob("device_type=*/**/*.parquet")))
    assert not [path for path in written if "device_id=1001" in str(path)]
    _assert_counters_add_up(under_test.pool.stats, 8)


async def test_a_fetch_raising_a_foreign_exception_does_not_hang_the_producer(
    tmp_path: Path,
) -> None:
    """A fetch raising something outside the error tree (a bug in a transport) while many
    days wait to be queued: the producer, waiting for room, is woken and the run ends."""

    async def fetch(job: WindowJob) -> bytes:
        raise AttributeError("'NoneType' object has no attribute 'read'")

    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=2, days_in_flight=2)
    under_test.pool._fetch = fetch
    error = await _run_expecting(under_test, _jobs(days=50, windows_per_day=12))
    assert "AttributeError" in str(error)
    assert _checkpointed_devices(tmp_path) == set()
    _assert_counters_add_up(under_test.pool.stats, 600)


async def test_a_plan_that_breaks_midway_stops_the_run(tmp_path: Path) -> None:
    """The plan's iteration raises after three days: the days already queued are fetched and
    written (a drain), the workers all return, and the run raises an InternalError."""
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=2, days_in_flight=2)
    jobs = _jobs(days=6, windows_per_day=1)

    def plan() -> Iterator[WindowJob]:
        yield from jobs[:3]
        raise LookupError("planner bug")

    with pytest.raises(InternalError, match="LookupError"):
        await asyncio.wait_for(under_test.pool.run(plan(), len(jobs)), NO_HANG_S)
    stats = under_test.pool.stats
    assert stats.windows_done + stats.windows_left == 6
