"""``harvester verify`` (against the server) and ``harvester status`` (checkpoint only)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from harvester.api.client import ClientSettings, SensitClient
from harvester.archive.checkpoint.state import DayProgress
from harvester.archive.layout import RUNS_PREFIX
from harvester.cli.common import (
    add_common_options,
    add_shard_option,
    load_config,
    printable,
    setup_logging,
)
from harvester.config import HarvestConfig
from harvester.fetch.gate import RequestGate
from harvester.harvest import (
    discover,
    open_existing_storage,
    read_all_checkpoints,
)
from harvester.inspect.verify import compare, format_mismatches
from harvester.models import is_complete_day


def register(commands: Any) -> None:
    verify = commands.add_parser("verify", help="compare stored rows with the server's counts")
    add_common_options(verify)
    verify.add_argument("--rps", help="request rate ceiling per second (20)")
    verify.add_argument("--concurrency", help="requests in flight at once (16)")
    add_shard_option(verify)
    verify.set_defaults(handler=_verify)
    status = commands.add_parser("status", help="progress from the checkpoint (no network)")
    add_common_options(status, network=False)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)


def _verify(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    return asyncio.run(verify_command(config))


async def verify_command(config: HarvestConfig) -> int:
    """Print every mismatching device-day and a verdict; exit code 1 on any mismatch."""
    settings = ClientSettings.from_config(config)
    storage = open_existing_storage(config)
    async with SensitClient(settings) as client:
        discovery = await discover(
            client, config, RequestGate(config.rps), timezone=config.timezone
        )
    report = await asyncio.to_thread(
        compare, storage, discovery.availability, config.zone, config.since, config.until
    )
    for line in format_mismatches(report.mismatches):
        print(printable(line))
    for failed in discovery.failed:
        print(
            f"UNVERIFIED {failed.device.type} {printable(failed.device.uuid)}: "
            f"{printable(failed.reason)}"
        )
    problems = [f"{len(report.mismatches)} MISMATCHES"] if report.mismatches else []
    if discovery.failed:
        problems.append(f"{len(discovery.failed)} DEVICES UNVERIFIED")
    verdict = ", ".join(problems) or "OK"
    print(
        f"verify {verdict}: {report.days_checked} device-days ({config.timezone}), "
        f"server {report.server_records:,} records, stored {report.stored_records:,}"
    )
    return 1 if problems else 0


def summarize(days: Sequence[DayProgress]) -> dict[str, int]:
    """Totals over the checkpoint's device-days (complete: ``models.is_complete_day``)."""
    return {
        "devices": len({d.device_uuid for d in days}),
        "days": len(days),
        "days_complete": sum(
            is_complete_day(d.records, d.day_count, d.windows_failed) for d in days
        ),
        "windows_finished": sum(d.windows_finished for d in days),
        "windows_failed": sum(d.windows_failed for d in days),
        "records": sum(d.records for d in days),
    }


def _status(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    storage = open_existing_storage(config)
    journal = read_all_checkpoints(storage)
    status = summarize(journal.days())
    runs = sorted(k for k in storage.list_files(RUNS_PREFIX) if k.endswith(".json"))
    last_run = orjson.loads(storage.read_bytes(runs[-1])) if runs else None
    if args.json:
        print(orjson.dumps({**status, "last_run": last_run}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"archive          {storage.describe()}")
    print(f"devices          {status['devices']}")
    print(f"device-days      {status['days']} ({status['days_complete']} complete)")
    print(f"windows done     {status['windows_finished']}")
    print(f"windows failed   {status['windows_failed']}")
    print(f"records stored   {status['records']:,}")
    if last_run is not None:
        print(f"last run         {printable(_describe_run(last_run))}")
    for failure in journal.failed():
        print(
            f"FAILED           {printable(failure.device_uuid)} {failure.start.isoformat()} .. "
            f"{failure.end.isoformat()}: {printable(failure.reason)}"
        )
    return 0


def _describe_run(manifest: dict[str, Any]) -> str:
    """One line from a run manifest: how it ended, what it did and what it left."""
    if manifest.get("error"):
        outcome = f"stopped by an error ({manifest['error']})"
    elif manifest.get("interrupted"):
        outcome = "interrupted"
    else:
        outcome = "finished"
    # Manifests of earlier versions carry no count of what was left.
    left = manifest.get("windows_left")
    return (
        f"{manifest['run_id']} {outcome}: {manifest['windows_done']} windows, "
        f"{manifest['records']:,} records, {manifest['windows_failed']} failed"
        + ("" if left is None else f", {left} left for the next run")
        + f", {manifest['wall_s']} s"
    )
