"""One harvest, start to finish: lock → checkpoint → sign in → plan → pool → manifest; and
``harvester plan``'s preview of it (the same steps up to the plan, writing nothing).

Storage work before the pool (opening the archive and its checkpoint, which may compact it,
the state files and the file check of planning) runs in a worker thread: on object storage
each call is a round trip, and the event loop must stay free to take a signal. A ``stop`` set
meanwhile is honoured at the end of the step under way (a step that writes is never cut
short); discovery, which only reads, is dropped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog

from harvester import __version__, crashpoints
from harvester.api.client import ClientSettings
from harvester.api.client import SensitClient as SensitClient
from harvester.archive.availability import record_availability
from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.layout import DEVICES_NAME, checkpoint_prefix, lock_key, run_key, state_key
from harvester.archive.opening import open_storage
from harvester.archive.planning import days_disagreeing, make_plan, repair_plan
from harvester.archive.schemas import SchemaRegistry
from harvester.archive.settings import settle_partition
from harvester.archive.sink import ParquetSink
from harvester.archive.storage import Storage
from harvester.config import HarvestConfig
from harvester.errors import HarvesterError, InternalError, Interrupted
from harvester.fetch.backoff import RetryPolicy
from harvester.fetch.discovery import Discovery, discover, discover_devices
from harvester.fetch.gate import RequestGate as RequestGate
from harvester.fetch.pool import PoolStats, describe_stats
from harvester.fetch.pool import WindowPool as WindowPool
from harvester.models import FailedDevice, WindowJob
from harvester.plan.planner import Plan, estimate_seconds
from harvester.plan.shards import Shard

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: How an observer (the CLI's progress display) is handed a live run: its pool, its gate and
#: its client, re-exported above so that it need not reach into the layers below.
OnPool = Callable[[WindowPool, RequestGate, SensitClient], None]

#: Seconds a window is assumed to take in flight, for the plan's estimate.
ESTIMATE_LATENCY_S = 0.5


def retry_policy(config: HarvestConfig) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=config.max_attempts, window_429_budget_s=config.window_429_budget_s
    )


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None as soon as ``stop`` is set (``work`` is then cancelled):
    only for work that writes nothing, such as discovery."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


@dataclass(frozen=True)
class PlanPreview:
    """What ``harvester plan`` shows: the plan's totals, what discovery found, and how long a
    run should take at the configured rate and concurrency."""

    plan: Plan
    discovery: Discovery
    eta_s: float


def _open_for_plan(config: HarvestConfig) -> tuple[Storage, CheckpointJournal]:
    storage = open_storage(config)
    settle_partition(storage, config.partition, record=False)
    journal = CheckpointJournal.open(
        storage, "plan", prefix=checkpoint_prefix(config.shard), compact=False
    )
    return storage, journal


async def preview_plan(config: HarvestConfig, stop: asyncio.Event) -> PlanPreview:
    """What a run would fetch now, but the days of damaged files it finds among those it
    never writes (it looks at them while it fetches); fetches no records and writes nothing
    (the checkpoint is read, not compacted). ``Interrupted`` when ``stop`` is set before the
    plan is made."""
    settings = ClientSettings.from_config(config)
    storage, journal = await asyncio.to_thread(_open_for_plan, config)
    discovery = None
    if not stop.is_set():
        discovery = await _unless_stopped(discover_devices(settings, config), stop)
    if discovery is None:
        raise Interrupted("interrupted before the plan was shown")
    # As a run does before its first request: the files it would write into are looked at,
    # the rest (700,000 on a 5-year fleet's half-done day archive: ~70 s of opening them)
    # only by the run, while it fetches.
    plan = await asyncio.to_thread(
        make_plan, config, discovery.availability, journal, storage, "written"
    )
    if stop.is_set():
        raise Interrupted("interrupted before the plan was shown")
    eta = estimate_seconds(
        plan.windows_to_fetch, config.rps, config.concurrency, latency_s=ESTIMATE_LATENCY_S
    )
    return PlanPreview(plan, discovery, eta)


@dataclass
class RunSummary:
    """What a run did; printed at the end and saved as the run manifest."""

    run_id: str
    started_at: str
    wall_s: float = 0.0
    devices: int = 0
    days: int = 0
    windows_planned: int = 0
    windows_reused: int = 0
    pool: PoolStats = field(default_factory=PoolStats)
    client: Mapping[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    devices_failed: list[FailedDevice] = field(default_factory=list)
    """Devices whose available dates could not be read: not harvested, and the run exits 1."""
    failure: HarvesterError | None = None
    """What stopped the run before every window was settled (the CLI raises it after the
    summary is printed and saved)."""
    days_short: int = 0
    """Device-days fetched whole whose records do not add up to the server's count (see
    ``days_disagreeing``): the run exits 1."""

    def as_dict(self) -> dict[str, Any]:
        stats = describe_stats(self.pool)
        return {
            "run_id": self.run_id,
            "version": __version__,
            "started_at": self.started_at,
            "wall_s": round(self.wall_s, 3),
            "devices": self.devices,
            "days": self.days,
            "windows_planned": self.windows_planned,
            "windows_reused": self.windows_reused,
            **stats,
            "windows_left": self.pool.windows_left,
            "records_per_s": round(stats["records"] / self.wall_s, 1) if self.wall_s else 0.0,
            "client": dict(self.client),
            "interrupted": self.interrupted,
            "devices_failed": [
                {"device": f.device.uuid, "type": f.device.type, "reason": f.reason}
                for f in self.devices_failed
            ],
            "error": None if self.failure is None else str(self.failure),
            "days_short": self.days_short,
            "failed_windows": [
                {
                    "device": f.device_uuid,
                    "start": f.start.isoformat(),
                    "end": f.end.isoformat(),
                    "attempts": f.attempts,
                    "reason": f.reason,
                }
                for f in self.pool.failures
            ],
        }


def new_run_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _write_json(storage: Storage, key: str, value: Any) -> None:
    body = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    storage.write_file(key, lambda handle: handle.write(body))


def _record_discovery(storage: Storage, config: HarvestConfig, discovery: Discovery) -> None:
    """The device list and their days, for ``report`` to read without the network."""
    _write_json(
        storage,
        state_key(config.shard, DEVICES_NAME),
        [{"uuid": d.uuid, "type": d.type, "name": d.name} for d in discovery.devices],
    )
    record_availability(storage, discovery.availability, config.shard)


async def run_harvest(
    config: HarvestConfig, stop: asyncio.Event, on_pool: OnPool | None = None
) -> RunSummary:
    """The back-fill. ``on_pool`` lets the CLI attach a progress display to a live run."""
    settings = ClientSettings.from_config(config)
    storage = await asyncio.to_thread(open_storage, config)
    run_id = new_run_id()
    summary = RunSummary(run_id=run_id, started_at=dt.datetime.now(dt.UTC).isoformat())
    started = time.monotonic()
    owner = f"run {run_id} (pid {os.getpid()} on {socket.gethostname()})"
    lock = await asyncio.to_thread(storage.acquire_lock, lock_key(config.shard), owner)
    try:
        await _harvest(config, settings, storage, run_id, stop, summary, on_pool)
        summary.interrupted = stop.is_set() and summary.failure is None
    except Exception as exc:
        # Before the pool started (or on closing): saved in the manifest, raised to the CLI.
        summary.failure = (
            exc if isinstance(exc, HarvesterError) else InternalError(exc, "during the run")
        )
        raise
    finally:
        summary.wall_s = time.monotonic() - started
        try:
            _write_json(storage, run_key(run_id), summary.as_dict())
        finally:
            lock.release()
    return summary


def _open_for_run(
    storage: Storage, config: HarvestConfig, run_id: str
) -> tuple[str, CheckpointJournal]:
    partition = settle_partition(storage, config.partition)
    journal = CheckpointJournal.open(storage, run_id, prefix=checkpoint_prefix(config.shard))
    return partition, journal


async def _harvest(
    config: HarvestConfig,
    settings: ClientSettings,
    storage: Storage,
    run_id: str,
    stop: asyncio.Event,
    summary: RunSummary,
    on_pool: OnPool | None,
) -> None:
    """The run under its lock: fills ``summary`` in as it goes."""
    partition, journal = await asyncio.to_thread(_open_for_run, storage, config, run_id)
    gate = RequestGate(config.rps)
    async with SensitClient(settings) as client:
        discovery = None
        if not stop.is_set():
            discovery = await _unless_stopped(discover(client, config, gate), stop)
        if discovery is None:
            return
        summary.devices_failed = discovery.failed
        await asyncio.to_thread(_record_discovery, storage, config, discovery)
        crashpoints.hit("planning")
        plan = await asyncio.to_thread(
            make_plan, config, discovery.availability, journal, storage, "written"
        )
        summary.devices, summary.days = plan.devices, plan.days
        summary.windows_planned, summary.windows_reused = plan.windows_total, plan.windows_reused
        log.info(
            "plan_ready",
            devices=plan.devices,
            days=plan.days,
            windows=plan.windows_to_fetch,
            reused=plan.windows_reused,
        )
        schemas = SchemaRegistry(storage)
        sink = ParquetSink(storage, schemas, partition)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="harvest-cpu") as executor:
            pool = WindowPool(
                fetch=lambda job: _fetch(client, job),
                sink=sink,
                journal=journal,
                gate=gate,
                policy=retry_policy(config),
                concurrency=config.concurrency,
                days_in_flight=config.effective_days_in_flight,
                executor=executor,
                stop=stop,
            )
            if on_pool is not None:
                on_pool(pool, gate, client)
            # The live counters: whatever stops the pool, the summary tells what it did.
            summary.pool = pool.stats
            # The files the run never writes are looked at while it fetches (most of a large
            # archive's): the days of damaged ones are fetched once the plan's are.
            no_repair = threading.Event()
            repairs = asyncio.ensure_future(
                asyncio.to_thread(
                    repair_plan,
                    config,
                    discovery.availability,
                    journal,
                    storage,
                    lambda: no_repair.is_set() or stop.is_set(),
                )
            )
            try:
                await pool.run(plan.jobs(), plan.windows_to_fetch)
                if not stop.is_set():
                    await _repair(pool, repairs, summary, stop)
                if not stop.is_set():
                    _check_settled(pool.stats)
                    await _align_widened(sink, schemas, executor, config.shard)
                    summary.days_short = await asyncio.to_thread(
                        days_disagreeing, config, discovery.availability, journal
                    )
                    if summary.days_short:
                        log.warning(
                            "days_short",
                            days=summary.days_short,
                            hint="every window fetched, yet the records do not add up to the "
                            "server's count: run `harvester verify` to see which days",
                        )
            except HarvesterError as exc:
                summary.failure = exc
            except Exception as exc:
                summary.failure = InternalError(exc, "after the last window")
            finally:
                summary.client = client.stats.as_dict()
                no_repair.set()
                with contextlib.suppress(Exception):
                    await repairs
    if summary.failure is None:
        await asyncio.to_thread(journal.close)


async def _repair(
    pool: WindowPool, repairs: Awaitable[Plan], summary: RunSummary, stop: asyncio.Event
) -> None:
    """Fetch the days of the damaged files found while the plan's windows were fetched (the
    plan counted their windows as reused)."""
    try:
        repair = await repairs
    except Interrupted:
        if stop.is_set():
            return
        raise
    if not repair.windows_to_fetch:
        return
    log.info("repair_ready", days=repair.days, windows=repair.windows_to_fetch)
    summary.windows_reused -= repair.windows_to_fetch
    await pool.run(repair.jobs(), repair.windows_to_fetch)


def _check_settled(stats: PoolStats) -> None:
    """A run that was not stopped settles every window it planned: never report success
    while one is neither done nor failed."""
    if stats.windows_left:
        raise InternalError(
            AssertionError(f"{stats.windows_left} planned windows were neither done nor failed"),
            "at the end of the run",
        )


async def _align_widened(
    sink: ParquetSink, schemas: SchemaRegistry, executor: Executor, shard: Shard | None
) -> None:
    """Keep the head file of each type (the first in path order, whence readers take the
    folder's schema) on the type's whole schema, so default readers see every field (and the
    older files only where readers cannot cast them); a shard rewrites only its own devices'
    files (others may be writing theirs right now)."""
    loop = asyncio.get_running_loop()
    owns = shard.owns if shard is not None else (lambda _uuid: True)
    for device_type in sorted(schemas.widened):
        await loop.run_in_executor(executor, sink.align_files, device_type, owns)


async def _fetch(client: SensitClient, job: WindowJob) -> bytes:
    return await client.fetch_window(job.device, job.start, job.end)
