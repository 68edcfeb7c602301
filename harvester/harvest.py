"""One harvest, start to finish: lock → checkpoint → sign in → plan → pool → manifest.

Also the network half of ``harvester plan``: discovering devices and their available days,
which both ``plan`` and ``run`` need.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog

from harvester import __version__, crashpoints
from harvester.api.client import ClientSettings, SensitClient
from harvester.archive.availability import record_availability
from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.integrity import damaged_days, trusting_only_intact
from harvester.archive.layout import (
    CHECKPOINT_PREFIX,
    DEVICES_NAME,
    HARVEST_DIR,
    checkpoint_prefix,
    journal_prefixes,
    lock_key,
    run_key,
    state_key,
    unusable_uuid,
)
from harvester.archive.objectstore import ObjectStorage, local_path, open_location
from harvester.archive.settings import settle_partition
from harvester.archive.sink import ParquetSink, SchemaRegistry
from harvester.archive.storage import LocalStorage, Storage
from harvester.config import HarvestConfig
from harvester.errors import ConfigError, HarvesterError, InternalError, RemoteError, StorageError
from harvester.fetch.backoff import RetryPolicy
from harvester.fetch.gate import RequestGate
from harvester.fetch.pool import PoolStats, WindowPool, describe_stats
from harvester.fetch.retrying import with_retries
from harvester.models import DayAvailability, Device, DeviceDays, FailedDevice, WindowJob
from harvester.plan.planner import Plan, plan_windows
from harvester.plan.shards import Shard, devices_of
from harvester.plan.windows import local_days_to_utc

log = structlog.get_logger(__name__)

T = TypeVar("T")

Availability = dict[Device, DeviceDays]


@dataclass(frozen=True)
class Discovery:
    """The available days of each selected device that answered, and the devices whose days
    could not be read (every other device is harvested all the same)."""

    availability: Availability
    failed: list[FailedDevice]

    @property
    def devices(self) -> list[Device]:
        """Every selected device, failed ones last."""
        return [*self.availability, *(f.device for f in self.failed)]


def open_storage(config: HarvestConfig) -> Storage:
    """The archive's storage, after checking that OUT is ours (or empty) and usable.

    A folder or ``file://`` URI is a ``LocalStorage``; any other URI (``s3://bucket/prefix``)
    is object storage through ``pyarrow.fs``.
    """
    out = local_path(config.out)
    if out is None:
        storage = open_location(config.out, config.s3_endpoint)
        assert isinstance(storage, ObjectStorage)  # only a local path makes a LocalStorage
        _refuse_foreign(storage.describe(), storage.top_level_names())
        return storage
    if out.exists() and not out.is_dir():
        raise StorageError(f"--out {out} is a file, not a folder: choose a folder")
    if out.is_dir():
        _refuse_foreign(str(out), [entry.name for entry in out.iterdir()])
    return LocalStorage(out)


def _refuse_foreign(out: str, names: Sequence[str]) -> None:
    foreign = sorted(
        name for name in names if name != HARVEST_DIR and not name.startswith(("device_type=", "."))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
        raise StorageError(
            f"--out {out} already holds files that are not a harvester archive ({shown}): "
            "choose an empty or new folder"
        )


def open_existing_storage(config: HarvestConfig) -> Storage:
    """The storage of an archive that must already exist (status, verify, report)."""
    out = local_path(config.out)
    missing = StorageError(f"no archive at --out {config.out}: run 'harvester run' first")
    if out is not None and not out.is_dir():
        raise missing
    storage = open_storage(config)
    if out is None and not storage.list_files(f"{HARVEST_DIR}/"):
        raise missing
    return storage


def read_all_checkpoints(storage: Storage) -> CheckpointJournal:
    """A read-only view of every journal (unsharded and each shard's): the whole dataset."""
    prefixes = journal_prefixes(storage.list_files(CHECKPOINT_PREFIX))
    return CheckpointJournal.open_all(storage, prefixes)


def retry_policy(config: HarvestConfig) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=config.max_attempts, window_429_budget_s=config.window_429_budget_s
    )


def select_devices(listed: Sequence[Device], config: HarvestConfig) -> list[Device]:
    """Devices of the configured type and uuids; unknown uuids are a configuration error."""
    if not listed:
        kind = "" if config.device_type == "ALL" else f"{config.device_type} "
        raise ConfigError(
            f"the account lists no {kind}devices: check --device-type and the account"
        )
    if not config.devices:
        return sorted(listed, key=lambda d: (d.type, d.uuid))
    by_uuid = {d.uuid: d for d in listed}
    unknown = [u for u in config.devices if u not in by_uuid]
    if unknown:
        known = ", ".join(sorted(by_uuid)[:10])
        raise ConfigError(
            f"unknown device uuid(s) {', '.join(unknown)} for --device-type "
            f"{config.device_type}: the account has {known}"
        )
    return [by_uuid[u] for u in config.devices]


async def discover(
    client: SensitClient,
    config: HarvestConfig,
    gate: RequestGate,
    timezone: str = "UTC",
) -> Discovery:
    """Sign in, list the selected devices and read their available days (bounded, paced).

    ``--max-attempts`` is a per-window budget; these few calls always get at least the
    default one, since without them there is no plan at all. A device whose days cannot be
    read (after the retries its error is worth) is a ``FailedDevice``; the others go on.
    """
    policy = RetryPolicy(max_attempts=max(RetryPolicy().max_attempts, config.max_attempts))

    async def paced(call: Callable[[], Awaitable[T]], what: str) -> T:
        return await with_retries(lambda: gate.send(call), policy, what=what)

    await paced(client.sign_in, "sign-in")
    listed = await paced(lambda: client.list_devices(config.device_type), "device list")
    devices = devices_of(select_devices(listed, config), config.shard)
    if config.shard is not None:
        log.info("shard_devices", shard=str(config.shard), devices=len(devices), of=len(listed))
    slots = asyncio.Semaphore(config.concurrency)

    async def dates_of(device: Device) -> DeviceDays | FailedDevice:
        unusable = unusable_uuid(device.uuid)
        if unusable is not None:
            log.warning("device_failed", device=device.uuid[:40], type=device.type, reason=unusable)
            return FailedDevice(device, f"{unusable}: it cannot name a folder of the archive")
        try:
            async with slots:
                days: list[DayAvailability] = await paced(
                    lambda: client.available_dates(device, timezone), f"dates of {device.uuid}"
                )
        except RemoteError as exc:
            log.warning("device_failed", device=device.uuid, type=device.type, reason=str(exc))
            return FailedDevice(device, str(exc))
        if not days:
            log.warning("device_has_no_data", device=device.uuid, type=device.type)
        return DeviceDays.of(days)

    found = await asyncio.gather(*(dates_of(d) for d in devices))
    return Discovery(
        {d: days for d, days in zip(devices, found, strict=True) if isinstance(days, DeviceDays)},
        [failure for failure in found if isinstance(failure, FailedDevice)],
    )


def make_plan(
    config: HarvestConfig, availability: Availability, journal: CheckpointJournal, storage: Storage
) -> Plan:
    """The windows to fetch; a day whose file is missing or damaged is fetched again whole."""
    lo, hi = local_days_to_utc(config.since, config.until, config.zone)
    damaged = damaged_days(storage, availability, journal.finished_for, lo, hi)
    return plan_windows(
        availability,
        lo,
        hi,
        trusting_only_intact(journal.finished_for, damaged),
        journal.finished_days,
    )


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


async def run_harvest(
    config: HarvestConfig,
    stop: asyncio.Event,
    on_pool: Callable[[WindowPool, RequestGate, SensitClient], None] | None = None,
) -> RunSummary:
    """The back-fill. ``on_pool`` lets the CLI attach a progress display to a live run."""
    settings = ClientSettings.from_config(config)
    storage = open_storage(config)
    run_id = new_run_id()
    summary = RunSummary(run_id=run_id, started_at=dt.datetime.now(dt.UTC).isoformat())
    started = time.monotonic()
    owner = f"run {run_id} (pid {os.getpid()} on {socket.gethostname()})"
    lock = storage.acquire_lock(lock_key(config.shard), owner)
    try:
        partition = settle_partition(storage, config.partition)
        journal = CheckpointJournal.open(storage, run_id, prefix=checkpoint_prefix(config.shard))
        gate = RequestGate(config.rps)
        async with SensitClient(settings) as client:
            discovery = await discover(client, config, gate)
            availability, summary.devices_failed = discovery.availability, discovery.failed
            _write_json(
                storage,
                state_key(config.shard, DEVICES_NAME),
                [{"uuid": d.uuid, "type": d.type, "name": d.name} for d in discovery.devices],
            )
            record_availability(storage, availability, config.shard)
            crashpoints.hit("planning")
            plan = make_plan(config, availability, journal, storage)
            summary.devices, summary.days = plan.devices, plan.days
            summary.windows_planned, summary.windows_reused = (
                plan.windows_total,
                plan.windows_reused,
            )
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
                try:
                    await pool.run(plan.jobs(), plan.windows_to_fetch)
                    if not stop.is_set():
                        _check_settled(pool.stats)
                        await _align_widened(sink, schemas, executor, config.shard)
                except HarvesterError as exc:
                    summary.failure = exc
                except Exception as exc:
                    summary.failure = InternalError(exc, "after the last window")
                finally:
                    summary.client = client.stats.as_dict()
                summary.interrupted = stop.is_set() and summary.failure is None
        if summary.failure is None:
            journal.close()
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
    """Keep each device type's files on one schema, so default readers see every field; a
    shard aligns only its own devices' files (others may be writing theirs right now)."""
    loop = asyncio.get_running_loop()
    owns = shard.owns if shard is not None else (lambda _uuid: True)
    for device_type in sorted(schemas.widened):
        await loop.run_in_executor(executor, sink.align_files, device_type, owns)


async def _fetch(client: SensitClient, job: WindowJob) -> bytes:
    return await client.fetch_window(job.device, job.start, job.end)
