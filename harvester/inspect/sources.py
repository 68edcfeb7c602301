"""What ``verify`` and ``report`` read, gathered: the archive (opened, its checkpoint, its
files and state) and, when they ask, the server's counts of now.

The comparisons and the coverage themselves are ``verify`` and ``report``; this module only
opens and asks, so that the command line has one call to make.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from harvester.api.client import ClientSettings
from harvester.archive.availability import DayCounts, read_availability
from harvester.archive.layout import HARVEST_DIR
from harvester.archive.opening import open_existing_storage, open_storage, read_all_checkpoints
from harvester.config import HarvestConfig
from harvester.errors import StorageError
from harvester.fetch.discovery import discover_devices
from harvester.inspect.report import Coverage, build_coverage, read_devices, stored_rows
from harvester.inspect.verify import VerifyReport, compare
from harvester.models import FailedDevice


@dataclass(frozen=True)
class Verification:
    """The archive against the server: every compared device-day, and the devices whose
    counts could not be read (unverified)."""

    report: VerifyReport
    unverified: list[FailedDevice]


async def verify_archive(config: HarvestConfig) -> Verification:
    """Stored rows per device and day (in ``config.timezone``) against the server's counts."""
    settings = ClientSettings.from_config(config)
    storage = await asyncio.to_thread(open_existing_storage, config)
    discovery = await discover_devices(settings, config, timezone=config.timezone)
    report = await asyncio.to_thread(
        compare, storage, discovery.availability, config.zone, config.since, config.until
    )
    return Verification(report, discovery.failed)


def collect_coverage(config: HarvestConfig, *, verify: bool = False) -> Coverage:
    """The coverage of ``config.out`` (restricted to its device and day selection); with
    ``verify``, against the server's counts of now rather than those the last run recorded."""
    storage = open_storage(config)
    if not storage.list_files(f"{HARVEST_DIR}/"):
        raise StorageError(f"no archive at --out {config.out}: run 'harvester run' first")
    journal = read_all_checkpoints(storage)
    devices = read_devices(storage)
    server_days = asyncio.run(_server_days(config)) if verify else read_availability(storage)
    coverage = build_coverage(
        devices,
        journal.days(),
        stored_rows(storage),
        server_days,
        counts_are_current=verify,
        since=config.since,
        until=config.until,
    )
    rows = [
        row
        for row in coverage.rows
        if config.device_type in ("ALL", row.device.type)
        and (not config.devices or row.device.uuid in config.devices)
    ]
    return Coverage(rows, coverage.first, coverage.last, coverage.counts_from)


async def _server_days(config: HarvestConfig) -> DayCounts:
    found = await discover_devices(ClientSettings.from_config(config), config)
    return {
        device.uuid: {a.day: a.count for a in days} for device, days in found.availability.items()
    }
