"""``harvester verify`` (against the server) and ``harvester status`` (checkpoint only): options
in, one call into ``harvester.inspect``, the outcome printed."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from harvester.cli.common import (
    HelpFormatter,
    add_common_options,
    add_shard_option,
    load_config,
    printable,
    setup_logging,
)

if TYPE_CHECKING:
    from harvester.config import HarvestConfig
    from harvester.inspect.status import ArchiveStatus

VERIFY_DESCRIPTION = """\
Compare, per device and day (in --timezone), the rows stored in the archive with
the count the server reports for that day. Every mismatch is listed with the
server's count and the stored one, then a one-line verdict. Exits 1 on any
mismatch or on a device whose counts could not be read.
"""
VERIFY_EPILOG = """\
example:
  harvester verify --out sensit-data --since 2024-01-01 --until 2024-01-31
"""
STATUS_DESCRIPTION = """\
Show an archive's progress: devices, device-days (and how many are complete),
windows done and failed, records stored, and how the last run ended. Read from
the archive's checkpoint alone, without the network, so it is quick and safe to
run while a harvest is writing.
"""
STATUS_EPILOG = """\
examples:
  harvester status --out sensit-data
  harvester status --out s3://bucket/sensit --json
"""


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="progress of an archive, from its checkpoint alone (no network)",
        description=STATUS_DESCRIPTION,
        epilog=STATUS_EPILOG,
        formatter_class=HelpFormatter,
    )
    add_common_options(status, network=False)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)
    verify = commands.add_parser(
        "verify",
        help="compare the rows stored per device-day with the server's counts",
        description=VERIFY_DESCRIPTION,
        epilog=VERIFY_EPILOG,
        formatter_class=HelpFormatter,
    )
    add_common_options(verify)
    verify.add_argument("--rps", help="request rate ceiling per second (20)")
    verify.add_argument("--concurrency", help="requests in flight at once (16)")
    add_shard_option(verify)
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    return asyncio.run(verify_command(config))


async def verify_command(config: HarvestConfig) -> int:
    """Print every mismatching device-day and a verdict; exit code 1 on any mismatch."""
    from harvester.inspect.sources import verify_archive
    from harvester.inspect.verify import format_mismatches

    verification = await verify_archive(config)
    report, unverified = verification.report, verification.unverified
    for line in format_mismatches(report.mismatches):
        print(printable(line))
    for failed in unverified:
        print(
            f"UNVERIFIED {failed.device.type} {printable(failed.device.uuid)}: "
            f"{printable(failed.reason)}"
        )
    problems = [f"{len(report.mismatches)} MISMATCHES"] if report.mismatches else []
    if unverified:
        problems.append(f"{len(unverified)} DEVICES UNVERIFIED")
    verdict = ", ".join(problems) or "OK"
    print(
        f"verify {verdict}: {report.days_checked} device-days ({config.timezone}), "
        f"server {report.server_records:,} records, stored {report.stored_records:,}"
    )
    return 1 if problems else 0


def _status(args: argparse.Namespace) -> int:
    from harvester.inspect.status import read_status

    setup_logging(args)
    config = load_config(args)
    status = read_status(config)
    if args.json:
        document = {**status.totals, "last_run": status.last_run}
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return 0
    print_status(status)
    return 0


def print_status(status: ArchiveStatus) -> None:
    totals = status.totals
    print(f"archive          {status.archive}")
    print(f"devices          {totals['devices']}")
    print(f"device-days      {totals['days']} ({totals['days_complete']} complete)")
    print(f"windows done     {totals['windows_finished']}")
    print(f"windows failed   {totals['windows_failed']}")
    print(f"records stored   {totals['records']:,}")
    if status.last_run is not None:
        print(f"last run         {printable(_describe_run(status.last_run))}")
    for failure in status.failed:
        print(
            f"FAILED           {printable(failure.device_uuid)} {failure.start.isoformat()} .. "
            f"{failure.end.isoformat()}: {printable(failure.reason)}"
        )


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
