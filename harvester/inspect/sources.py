"""What ``verify`` and ``report`` read, gathered: the archive (opened, its checkpoint, its
files and state) and, when they ask, the server's counts of now.

The comparisons and the coverage themselves are ``verify`` and ``report``; this module only
opens and asks, so that the command line has one call to make. The network stack is imported
by the calls that ask the server: it is ~10 MB that ``report`` without ``--verify`` never uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from harvester.archive.availability import AvailabilityColumns, read_availability_columns
from harvester.archive.layout import HARVEST_DIR
from harvester.archive.opening import open_existing_storage, open_storage, read_all_checkpoints
from harvester.config import HarvestConfig
from harvester.errors import StorageError
from harvester.inspect.report import Coverage, device_folders, read_devices, read_stored
from harvester.inspect.report_join import coverage_parts, joined
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
    from harvester.api.client import ClientSettings
    from harvester.fetch.discovery import discover_devices

    settings = ClientSettings.from_config(config)
    storage = await asyncio.to_thread(open_existing_storage, config)
    discovery = await discover_devices(settings, config, timezone=config.timezone)
    report = await asyncio.to_thread(
        compare, storage, discovery.availability, config.zone, config.since, config.until
    )
    return Verification(report, discovery.failed)


def collect_coverage(
    config: HarvestConfig,
    *,
    verify: bool = False,
    release_memory: Callable[[], object] = lambda: None,
) -> Coverage:
    """The coverage of ``config.out`` (restricted to its device and day selection); with
    ``verify``, against the server's counts of now rather than those the last run recorded.

    The day totals and the server's counts are held whole (~45 and ~21 MB for 1.4 million
    device-days); the files are read and joined ``DEVICES_PER_PART`` devices at a time.
    ``release_memory`` is called where much was just let go (the console script hands the
    freed heap back to the system there).
    """
    storage = open_storage(config)
    if not storage.list_files(f"{HARVEST_DIR}/"):
        raise StorageError(f"no archive at --out {config.out}: run 'harvester run' first")
    if verify:
        # A broken checkpoint is reported before any request goes out.
        checkpoint = read_all_checkpoints(storage).day_totals()
        server_days = asyncio.run(_server_days(config))
    else:
        # The checkpoint first, on a heap nothing else has used yet: read after the recorded
        # copy, it peaked 18 MB higher on 1,000 devices x 5 years.
        checkpoint = read_all_checkpoints(storage).day_totals()
        release_memory()
        server_days = read_availability_columns(storage)
    release_memory()
    parts = []
    for part in coverage_parts(
        read_devices(storage),
        checkpoint,
        device_folders(storage),
        server_days,
        lambda folders: read_stored(storage, folders),
        counts_are_current=verify,
        since=config.since,
        until=config.until,
    ):
        parts.append(part)
        # Each part's files leave their garbage below the part kept.
        release_memory()
    del checkpoint, server_days
    release_memory()
    return joined(parts, counts_are_current=verify).select(
        lambda device: (
            config.device_type in ("ALL", device.type)
            and (not config.devices or device.uuid in config.devices)
        )
    )


async def _server_days(config: HarvestConfig) -> AvailabilityColumns:
    from harvester.api.client import ClientSettings
    from harvester.fetch.discovery import discover_devices

    found = await discover_devices(ClientSettings.from_config(config), config)
    return AvailabilityColumns.of(
        (device.uuid, days) for device, days in found.availability.items()
    )
