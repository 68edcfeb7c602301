"""The bounded async worker pool: N workers, a paced request gate, retries, drain on stop.

Jobs arrive ordered device-day by device-day. A producer queues a day's windows when the
workers are about to run out of queued windows, and only while fewer than ``days_in_flight``
days are open and their parsed windows hold less than ``held_bytes_budget`` (that bounds
memory however long the back-fill, and however large its windows); ``concurrency`` workers
take windows, wait for their request slot, fetch with retries, and parse (large bodies in a
thread). When the last window of a day is settled, the day is written by the sink in a thread
and only then recorded in the checkpoint.

Stopping (``stop`` event set, e.g. by SIGINT): no new day is admitted, queued windows are
abandoned (neither finished nor failed, so the next run plans them again), windows in flight
finish, and the days they belong to are written and checkpointed. An error nobody foresaw
(a bug, a library's own exception, MemoryError) stops the run the same way, but the day it
struck is neither written nor checkpointed; ``run`` then raises it as an ``InternalError``
naming the device-day. No task outlives ``run``: workers and day writers belong to one
``asyncio.TaskGroup``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar

import pyarrow as pa
import structlog

from harvester import crashpoints
from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.sink import DayWriteResult, ParquetSink, WindowRows
from harvester.errors import (
    AuthError,
    HarvesterError,
    InternalError,
    Interrupted,
    RateLimitedError,
    RemoteError,
    RetryableError,
)
from harvester.fetch.backoff import RetryPolicy
from harvester.fetch.gate import RequestGate
from harvester.fetch.retrying import with_retries
from harvester.models import FailedWindow, FinishedWindow, WindowJob
from harvester.records.limits import INLINE_PARSE_MAX_BYTES
from harvester.records.parse import parse_window

log = structlog.get_logger(__name__)

T = TypeVar("T")

FetchWindow = Callable[[WindowJob], Awaitable[bytes]]
#: Parsed windows held for their day's write beyond which no further day is opened.
HELD_BYTES_BUDGET: Final = 64 * 1024 * 1024
#: Days always allowed open (within ``days_in_flight``), whatever the budget: the one being
#: fetched and the next.
MIN_OPEN_DAYS: Final = 2


@dataclass
class PoolStats:
    """Counters of one run, read by the progress display and the summary."""

    windows_total: int = 0
    windows_done: int = 0
    windows_failed: int = 0
    windows_abandoned: int = 0
    days_written: int = 0
    records: int = 0
    bytes_written: int = 0
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    windows_backing_off: int = 0
    """Windows sleeping through a retry back-off right now."""
    backoff_ends_at: float = 0.0
    """When the latest back-off begun so far ends (UNIX time; 0 before the first)."""
    failures: list[FailedWindow] = field(default_factory=list)

    @property
    def windows_left(self) -> int:
        """Windows to fetch that are neither done nor failed: the next run plans them again."""
        return self.windows_total - self.windows_done - self.windows_failed


@dataclass
class _DayBatch:
    jobs: list[WindowJob]
    rows: dict[WindowJob, pa.Table] = field(default_factory=dict)
    failed: list[FailedWindow] = field(default_factory=list)
    settled: int = 0
    held_bytes: int = 0
    #: An unexpected error struck one of its windows: the day is neither written nor recorded.
    struck: bool = False

    @property
    def complete(self) -> bool:
        return self.settled == len(self.jobs)


class WindowPool:
    """Fetches planned windows into the sink and the checkpoint; see the module docstring."""

    def __init__(
        self,
        *,
        fetch: FetchWindow,
        sink: ParquetSink,
        journal: CheckpointJournal,
        gate: RequestGate,
        policy: RetryPolicy,
        concurrency: int,
        days_in_flight: int,
        executor: Executor,
        stop: asyncio.Event,
        rand: Callable[[], float] = random.random,
        held_bytes_budget: int = HELD_BYTES_BUDGET,
    ) -> None:
        self._fetch = fetch
        self._sink = sink
        self._journal = journal
        self._gate = gate
        self._policy = policy
        self._concurrency = concurrency
        self._days_in_flight = days_in_flight
        self._held_bytes_budget = held_bytes_budget
        self._open_days = 0
        self._held_bytes = 0
        self._room = asyncio.Event()
        self._executor = executor
        self._stop = stop
        self._rand = rand
        self._queue: asyncio.Queue[tuple[_DayBatch, WindowJob] | None] = asyncio.Queue()
        self._tasks: asyncio.TaskGroup | None = None
        self._fatal: HarvesterError | None = None
        self.stats = PoolStats()

    async def run(self, jobs: Iterable[WindowJob], windows: int | None = None) -> PoolStats:
        """Fetch every job (or until stopped); raise the first fatal error, if any.

        ``jobs`` come device-day by device-day (a day's windows contiguous) and are taken only
        as days are opened, so a plan may make them as it goes; ``windows`` is their number
        (a plan counts it up front), or None for a list of them.

        Every worker and day writer is a task of one ``TaskGroup``, so none outlives the run
        and none fails unseen: each catches what it raises, stops the run as a signal would
        (``_abort``) and lets the others drain.
        """
        if windows is None:
            jobs = list(jobs)
            windows = len(jobs)
        self.stats.windows_total += windows
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                for _ in range(self._concurrency):
                    tasks.create_task(self._worker())
                await self._produce(jobs)
        finally:
            self._tasks = None
            await self._final_flush()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    async def _final_flush(self) -> None:
        try:
            await asyncio.to_thread(self._journal.flush)
        except HarvesterError as exc:
            self._abort(exc)
        except Exception as exc:
            self._abort_unexpected(exc, "while saving the checkpoint")

    async def _produce(self, jobs: Iterable[WindowJob]) -> None:
        try:
            for _, group in itertools.groupby(jobs, key=lambda j: (j.device.uuid, j.day)):
                while not self._may_open_day():
                    self._room.clear()
                    await self._room.wait()
                if self._stop.is_set():
                    break
                self._open_days += 1
                batch = _DayBatch(jobs=list(group))
                for job in batch.jobs:
                    self._queue.put_nowait((batch, job))
        except Exception as exc:
            self._abort_unexpected(exc, "while queueing the next day")
        finally:
            # Whatever happened, every worker gets its end-of-work mark and returns.
            for _ in range(self._concurrency):
                self._queue.put_nowait(None)

    def _may_open_day(self) -> bool:
        if self._stop.is_set() or self._open_days < min(MIN_OPEN_DAYS, self._days_in_flight):
            return True
        return (
            self._queue.qsize() < self._concurrency
            and self._open_days < self._days_in_flight
            and self._held_bytes < self._held_bytes_budget
        )

    async def _worker(self) -> None:
        while (item := await self._queue.get()) is not None:
            if self._queue.qsize() < self._concurrency:
                self._room.set()
            batch, job = item
            if self._stop.is_set():
                self.stats.windows_abandoned += 1
            else:
                try:
                    await self._fetch_into(batch, job)
                except Exception as exc:
                    # The day is not written: its windows stay un-checkpointed for the next run.
                    batch.struck = True
                    self._abort_unexpected(exc, f"fetching {_window_name(job)}")
            batch.settled += 1
            if batch.complete:
                assert self._tasks is not None  # workers run only inside run()'s task group
                self._tasks.create_task(self._write_day(batch))

    async def _fetch_into(self, batch: _DayBatch, job: WindowJob) -> None:
        attempts = 0

        async def attempt() -> pa.Table:
            nonlocal attempts
            if self._stop.is_set():
                raise Interrupted("stopped before the next attempt")
            attempts += 1
            self.stats.attempts += 1
            body = await self._gate.send(lambda: self._fetch(job), key=job)
            crashpoints.hit("fetched")
            if len(body) <= INLINE_PARSE_MAX_BYTES:
                return parse_window(body)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, parse_window, body)

        def on_retry(error: RetryableError, delay: float) -> None:
            self.stats.retries += 1
            if isinstance(error, RateLimitedError):
                self.stats.rate_limited += 1
            log.debug(
                "window_retry",
                device=job.device.uuid,
                start=job.start.isoformat(),
                error=str(error),
                delay_s=round(delay, 2),
            )

        try:
            table = await with_retries(
                attempt,
                self._policy,
                what=f"window {job.device.uuid} {job.start:%Y-%m-%d %H:%M}",
                on_retry=on_retry,
                rand=self._rand,
                sleep=self._sleep_unless_stopped,
            )
        except Interrupted:
            self.stats.windows_abandoned += 1
        except AuthError as exc:
            self._abort(exc)
        except RemoteError as exc:
            failure = FailedWindow(
                device_uuid=job.device.uuid,
                device_type=job.device.type,
                start=job.start,
                end=job.end,
                reason=str(exc),
                attempts=attempts,
            )
            batch.failed.append(failure)
            self.stats.failures.append(failure)
            self.stats.windows_failed += 1
            log.warning(
                "window_failed",
                device=job.device.uuid,
                start=job.start.isoformat(),
                attempts=attempts,
                reason=str(exc),
            )
        else:
            batch.rows[job] = table
            # Whole buffers, as memory holds them (nbytes walks every array to count a slice).
            held = table.get_total_buffer_size()
            batch.held_bytes += held
            self._held_bytes += held

    async def _sleep_unless_stopped(self, delay: float) -> None:
        # A back-off may be long; a stop must not wait for it.
        ends_at = time.time() + delay
        self.stats.backoff_ends_at = max(self.stats.backoff_ends_at, ends_at)
        self.stats.windows_backing_off += 1
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            return
        finally:
            self.stats.windows_backing_off -= 1

    def _abort(self, exc: HarvesterError) -> None:
        """Stop the run as a signal would (queued windows abandoned, in-flight ones drained);
        the first fatal error is the one ``run`` raises."""
        if self._fatal is None:
            self._fatal = exc
        else:
            log.error("another_fatal_error", error=str(exc))
        self._stop.set()
        # The producer may be waiting for room that a stopped run will not make.
        self._room.set()

    def _abort_unexpected(self, exc: Exception, where: str) -> None:
        error = InternalError(exc, where)
        log.error("unexpected_error", error=str(error), exc_info=exc)
        self._abort(error)

    def _merge_day(self, batch: _DayBatch) -> DayWriteResult:
        """In a thread: the day's windows merged into its file."""
        windows = [WindowRows(job.start, job.end, table) for job, table in batch.rows.items()]
        first = batch.jobs[0]
        return self._sink.write_day(first.device, first.day, windows)

    async def _write_day(self, batch: _DayBatch) -> None:
        first = batch.jobs[0]
        try:
            finished: list[FinishedWindow] = []
            if batch.rows and not batch.struck:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._executor, self._merge_day, batch)
                finished = [
                    FinishedWindow(
                        device_uuid=job.device.uuid,
                        device_type=job.device.type,
                        start=job.start,
                        end=job.end,
                        records=result.rows_per_window[(job.start, job.end)],
                        day_count=job.day_count,
                        sealed=job.sealed,
                    )
                    for job in batch.rows
                ]
                crashpoints.hit("day_written")
            self._journal.record(finished=finished, failed=batch.failed)
            # Counted once the journal holds them, so the summary never claims a window the
            # checkpoint lacks.
            if finished:
                self.stats.days_written += 1
                self.stats.bytes_written += result.bytes_written
                self.stats.records += sum(f.records for f in finished)
                self.stats.windows_done += len(finished)
                log.debug(
                    "day_written",
                    device=first.device.uuid,
                    day=first.day.isoformat(),
                    windows=len(finished),
                    records=sum(f.records for f in finished),
                    rows_in_file=result.rows_in_file,
                )
            # A flush fsyncs (and now and then compacts): off the event loop.
            now = asyncio.get_running_loop().time()
            await asyncio.to_thread(self._journal.maybe_flush, now)
        except HarvesterError as exc:
            self._abort(exc)
        except Exception as exc:
            self._abort_unexpected(exc, f"writing device {first.device.uuid} day {first.day}")
        finally:
            self._open_days -= 1
            self._held_bytes -= batch.held_bytes
            self._room.set()


def _window_name(job: WindowJob) -> str:
    return f"device {job.device.uuid} day {job.day} window {job.start:%H:%M}-{job.end:%H:%M}"


def describe_stats(stats: PoolStats) -> dict[str, Any]:
    """The counters as a flat dict for the summary and the run manifest."""
    return {f.name: getattr(stats, f.name) for f in fields(stats) if f.name != "failures"}
