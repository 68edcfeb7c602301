"""RequestGate: paced turns, and the rate learning from every request sent through it.
WindowPool: when it opens a device-day, and the bounds on open days and held windows; a
window refused on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.schemas import SchemaRegistry
from harvester.archive.sink import ParquetSink
from harvester.archive.storage import LocalStorage
from harvester.errors import RateLimitedError
from harvester.fetch.backoff import OwnRateLimitedError, RetryPolicy
from harvester.fetch.gate import RequestGate
from harvester.fetch.pool import WindowPool
from harvester.models import Device, WindowJob
from tests.support.counting_gate import CountingGate


async def test_slots_due_within_a_millisecond_are_sent_without_yielding() -> None:
    """At a very high rate, a hundred turns in a row never give the loop an iteration, so
    workers do not queue one loop iteration each behind the gate's lock."""
    gate = RequestGate(1e6)
    yielded: list[bool] = []
    asyncio.get_running_loop().call_soon(yielded.append, True)
    for _ in range(100):
        await gate.wait_turn()
    assert yielded == []


async def test_a_later_slot_is_still_waited_for() -> None:
    """At 20 requests/s the second turn sleeps until its slot (the loop runs meanwhile)."""
    gate = RequestGate(20)
    loop = asyncio.get_running_loop()
    await gate.wait_turn()
    yielded: list[bool] = []
    loop.call_soon(yielded.append, True)
    started = loop.time()
    await gate.wait_turn()
    assert yielded == [True]
    assert loop.time() - started >= 0.04


async def test_send_returns_the_answer_and_a_429_slows_the_gate() -> None:
    """Any request sent through the gate (a window, a dates call) feeds the adaptive rate."""
    gate = RequestGate(100)

    async def ok() -> str:
        return "answer"

    async def limited() -> str:
        raise RateLimitedError("429", retry_after=None)

    assert await gate.send(ok) == "answer"
    assert gate.rate == 100
    with pytest.raises(RateLimitedError):
        await gate.send(limited)
    assert gate.rate < 100


def _jobs(days: int, windows_per_day: int) -> list[WindowJob]:
    """Jobs of ``days`` device-days (one device each), ``windows_per_day`` 2-hour windows."""
    day = dt.date(2024, 3, 1)
    midnight = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    return [
        WindowJob(
            device=Device(uuid=str(1000 + d), type="SPOD", name=f"pod {d}"),
            day=day,
            start=midnight + dt.timedelta(hours=2 * w),
            end=midnight + dt.timedelta(hours=2 * w + 2),
            day_count=windows_per_day,
            reported_until=midnight + dt.timedelta(days=1),
        )
        for d in range(days)
        for w in range(windows_per_day)
    ]


class _Server:
    """A fake fetch: ``records`` records per window after a short wait, or, with
    ``hold_back``, windows after a day's first wait for ``release``. Counts what is in flight."""

    def __init__(self, records: int = 1, *, hold_back: bool = False) -> None:
        self.records = records
        self.hold_back = hold_back
        self.release = asyncio.Event()
        self.held_back = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def fetch(self, job: WindowJob) -> bytes:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if not self.hold_back:
            await asyncio.sleep(0.002)
        elif job.start.hour > 0:
            self.held_back.set()
            await self.release.wait()
        self.in_flight -= 1
        stamp = job.start + dt.timedelta(minutes=1)
        data = [
            {"_id": f"{job.device.uuid}{stamp:%H}{i:06d}", "date": f"{stamp:%Y-%m-%dT%H:%M}Z"}
            for i in range(self.records)
        ]
        return orjson.dumps({"data": data})


class _PoolUnderTest:
    """A WindowPool over a real sink and checkpoint in ``tmp_path``, fetching from a
    ``_Server``, noting the most device-days it ever had open."""

    def __init__(
        self,
        tmp_path: Path,
        server: _Server,
        *,
        concurrency: int,
        days_in_flight: int,
        held_bytes_budget: int = 1 << 30,
    ) -> None:
        self.server = server
        self.storage = LocalStorage(tmp_path)
        self.journal = CheckpointJournal.open(self.storage, "pool-test")
        self.executor = ThreadPoolExecutor(2)
        self.most_open_days = 0
        self.most_queued = 0
        self.pool = WindowPool(
            fetch=self._fetch,
            sink=ParquetSink(self.storage, SchemaRegistry(self.storage)),
            journal=self.journal,
            gate=RequestGate(1e6),
            policy=RetryPolicy(max_attempts=1),
            concurrency=concurrency,
            days_in_flight=days_in_flight,
            executor=self.executor,
            stop=asyncio.Event(),
            held_bytes_budget=held_bytes_budget,
        )

    async def _fetch(self, job: WindowJob) -> bytes:
        self.most_open_days = max(self.most_open_days, self.pool._open_days)
        self.most_queued = max(self.most_queued, self.pool._queue.qsize())
        return await self.server.fetch(job)

    async def run(self, jobs: list[WindowJob]) -> None:
        try:
            await self.pool.run(jobs)
        finally:
            self.journal.close()
            self.executor.shutdown()


async def test_days_of_few_windows_keep_every_worker_busy(tmp_path: Path) -> None:
    """Days of two windows each: the pool opens as many days as its 16 workers need, so all
    16 are fetching at once (a fixed few open days would leave most of them idle)."""
    server = _Server()
    under_test = _PoolUnderTest(tmp_path, server, concurrency=16, days_in_flight=40)
    await under_test.run(_jobs(days=40, windows_per_day=2))
    assert under_test.pool.stats.windows_done == 80
    assert server.most_in_flight == 16
    assert under_test.most_open_days >= 8


async def test_a_day_opens_only_when_the_workers_are_about_to_run_out(tmp_path: Path) -> None:
    """Days of twelve windows with 4 workers: a day is queued only once fewer than 4 windows
    wait, so no more than the first two days' (or 3 + 12) windows ever wait, although ten
    days may be open."""
    under_test = _PoolUnderTest(tmp_path, _Server(), concurrency=4, days_in_flight=10)
    await under_test.run(_jobs(days=10, windows_per_day=12))
    assert under_test.pool.stats.windows_done == 120
    assert under_test.most_queued <= 24


@pytest.mark.parametrize("ceiling", [1, 5])
async def test_open_days_never_exceed_the_ceiling(tmp_path: Path, ceiling: int) -> None:
    """However many workers wait, no more than ``days_in_flight`` days are open at once."""
    server = _Server()
    under_test = _PoolUnderTest(tmp_path, server, concurrency=16, days_in_flight=ceiling)
    await under_test.run(_jobs(days=30, windows_per_day=1))
    assert under_test.pool.stats.windows_done == 30
    assert under_test.most_open_days == ceiling
    assert server.most_in_flight == ceiling


async def _until_held_back(server: _Server, windows: int) -> None:
    while server.in_flight != windows:
        server.held_back.clear()
        await server.held_back.wait()


@pytest.mark.parametrize(("budget", "open_days"), [(1, 8), (1 << 30, 12)])
async def test_held_windows_beyond_the_budget_stop_new_days(
    tmp_path: Path, budget: int, open_days: int
) -> None:
    """Days of two windows whose second answer is held back, so parsed first windows pile
    up waiting for their day's write. With 16 workers the pool opens 8 days up front; past a
    byte budget it opens no more (memory stays bounded however large the windows), while
    without one it opens days up to its ceiling of 12."""
    server = _Server(hold_back=True)
    under_test = _PoolUnderTest(
        tmp_path, server, concurrency=16, days_in_flight=12, held_bytes_budget=budget
    )
    run = asyncio.create_task(under_test.run(_jobs(days=12, windows_per_day=2)))
    await asyncio.wait_for(_until_held_back(server, open_days), timeout=10)
    for _ in range(20):
        await asyncio.sleep(0)
    assert under_test.pool._open_days == open_days
    assert server.in_flight == open_days
    server.release.set()
    await run
    assert under_test.pool.stats.windows_done == 24


async def test_a_windows_own_429_is_raised_as_its_own_and_leaves_the_rate_alone() -> None:
    """Sent with its window as key: the window's first 429 slows the gate; after another
    window was served, its next 429 is raised as an OwnRateLimitedError (keeping the hint)
    and the rate is not cut again."""
    gate = CountingGate(100)

    async def ok() -> str:
        return "answer"

    async def limited() -> str:
        raise RateLimitedError("429", retry_after=86400.0)

    with pytest.raises(RateLimitedError) as first:
        await gate.send(limited, key="window a")
    assert not isinstance(first.value, OwnRateLimitedError)
    assert await gate.send(ok, key="window b") == "answer"
    with pytest.raises(OwnRateLimitedError) as second:
        await gate.send(limited, key="window a")
    assert second.value.retry_after == 86400.0
    assert gate.slowed == 1


async def test_a_window_refused_on_its_own_fails_alone_while_the_others_are_done(
    tmp_path: Path,
) -> None:
    """Two days of twelve windows; one window always answers 429 with Retry-After: 86400.
    With a 0.5 s budget it is given up after its second 429 (the hint outlasts the budget)
    and listed as failed; the other 23 are done; it slowed the gate once; no window is left
    counted as backing off."""
    server = _Server()
    refused = _jobs(days=2, windows_per_day=12)[5]

    async def fetch(job: WindowJob) -> bytes:
        if job == refused:
            raise RateLimitedError("HTTP 429", retry_after=86400.0)
        return await server.fetch(job)

    storage = LocalStorage(tmp_path)
    journal = CheckpointJournal.open(storage, "pool-test")
    gate = CountingGate(1e6)
    with ThreadPoolExecutor(2) as executor:
        pool = WindowPool(
            fetch=fetch,
            sink=ParquetSink(storage, SchemaRegistry(storage)),
            journal=journal,
            gate=gate,
            policy=RetryPolicy(window_429_budget_s=0.5),
            concurrency=4,
            days_in_flight=2,
            executor=executor,
            stop=asyncio.Event(),
        )
        try:
            stats = await pool.run(_jobs(days=2, windows_per_day=12))
        finally:
            journal.close()
    assert (stats.windows_done, stats.windows_failed) == (23, 1)
    [failure] = stats.failures
    assert (failure.device_uuid, failure.start, failure.attempts) == (
        refused.device.uuid,
        refused.start,
        2,
    )
    assert "refused on its own" in failure.reason
    assert gate.slowed == 1
    assert stats.windows_backing_off == 0
