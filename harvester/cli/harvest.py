"""``harvester plan`` and ``harvester run``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

import structlog

from harvester.api.client import ClientSettings, SensitClient
from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.layout import checkpoint_prefix
from harvester.archive.settings import settle_partition
from harvester.cli.common import (
    add_common_options,
    add_run_options,
    load_config,
    printable,
    setup_logging,
)
from harvester.cli.progress import RunProgress
from harvester.config import HarvestConfig
from harvester.errors import Interrupted
from harvester.fetch.gate import RequestGate
from harvester.harvest import (
    RunSummary,
    discover,
    make_plan,
    open_storage,
    run_harvest,
)
from harvester.plan.planner import estimate_seconds

log = structlog.get_logger(__name__)


def register(commands: Any) -> None:
    plan = commands.add_parser("plan", help="show what a run would fetch (no records fetched)")
    add_common_options(plan)
    add_run_options(plan)
    plan.set_defaults(handler=_plan)
    run = commands.add_parser("run", help="back-fill into the archive (resumable)")
    add_common_options(run)
    add_run_options(run)
    run.set_defaults(handler=_run)


def _plan(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    return asyncio.run(_plan_async(config))


async def _plan_async(config: HarvestConfig) -> int:
    settings = ClientSettings.from_config(config)
    storage = open_storage(config)
    settle_partition(storage, config.partition, record=False)
    journal = CheckpointJournal.open(
        storage, "plan", prefix=checkpoint_prefix(config.shard), compact=False
    )
    async with SensitClient(settings) as client:
        discovery = await discover(client, config, RequestGate(config.rps))
    availability = discovery.availability
    plan = make_plan(config, availability, journal, storage)
    to_fetch = plan.windows_to_fetch
    eta = estimate_seconds(to_fetch, config.rps, config.concurrency, latency_s=0.5)
    print(f"devices          {plan.devices}")
    print(f"device-days      {plan.days} ({plan.days_up_to_date} up to date, nothing to fetch)")
    print(f"windows          {plan.windows_total} ({plan.windows_reused} already done)")
    print(f"to fetch         {to_fetch} windows")
    print(
        f"estimated time   {_duration(eta)} at --rps {config.rps:g}, "
        f"--concurrency {config.concurrency}"
    )
    for device, days in availability.items():
        print(f"  {device.type:<5} {printable(device.uuid):<10} {len(days):>5} days with data")
    for failed in discovery.failed:
        print(
            f"  {failed.device.type:<5} {printable(failed.device.uuid):<10} FAILED, not planned: "
            f"{printable(failed.reason)}"
        )
    return 1 if discovery.failed else 0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    return asyncio.run(run_command(config))


async def run_command(config: HarvestConfig, progress: RunProgress | None = None) -> int:
    """The run with signal handling, progress and the final summary; returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("stopping_now", signal=signal.Signals(signum).name)
            os._exit(130)
        log.warning(
            "stopping",
            signal=signal.Signals(signum).name,
            detail="draining in-flight windows; signal again to quit at once",
        )
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    progress = progress or RunProgress()
    watcher = asyncio.create_task(progress.watch())
    try:
        summary = await run_harvest(config, stop, on_pool=progress.attach)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print_summary(summary)
    if summary.failure is not None:
        raise summary.failure
    if summary.interrupted:
        raise Interrupted("interrupted: in-flight windows saved; run again to resume")
    return 1 if summary.pool.failures or summary.pool.windows_left or summary.devices_failed else 0


def print_summary(summary: RunSummary) -> None:
    data = summary.as_dict()
    client = data["client"]
    listed_below = ("failed_windows", "devices_failed", "client")
    log.info("run_done", **{k: v for k, v in data.items() if k not in listed_below})
    out = sys.stdout
    print(
        f"windows  {data['windows_done']} done, {data['windows_failed']} failed, "
        f"{data['windows_reused']} already done, {data['windows_left']} left for next run",
        file=out,
    )
    print(
        f"records  {data['records']:,} in {data['days_written']} day files "
        f"({data['bytes_written'] / 1e6:.1f} MB)",
        file=out,
    )
    print(
        f"requests {client.get('requests', 0)} ({data['retries']} retries, "
        f"{data['rate_limited']} rate-limited, {client.get('sign_ins', 0)} sign-ins)",
        file=out,
    )
    print(f"time     {data['wall_s']:.1f} s ({data['records_per_s']:,.0f} records/s)", file=out)
    for failure in data["failed_windows"]:
        print(
            f"FAILED   device {printable(failure['device'])} {failure['start']} .. "
            f"{failure['end']} after {failure['attempts']} attempts: "
            f"{printable(failure['reason'])}",
            file=out,
        )
    for failure in data["devices_failed"]:
        print(
            f"FAILED   device {printable(failure['device'])} ({failure['type']}), nothing "
            f"fetched: {printable(failure['reason'])}",
            file=out,
        )
    if data["failed_windows"] or data["devices_failed"]:
        print("run again to retry the failed windows and devices", file=out)
