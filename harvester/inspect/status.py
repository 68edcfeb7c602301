"""``harvester status``: an archive's progress from its checkpoint and run manifests alone.

No network, and nothing of the harvest itself is loaded (no HTTP client): status is a quick
look, also at an archive on object storage while a run writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from harvester.archive.checkpoint.state import DayTotals
from harvester.archive.layout import RUNS_PREFIX
from harvester.archive.opening import open_existing_storage, read_all_checkpoints
from harvester.archive.storage import Storage
from harvester.config import HarvestConfig
from harvester.models import FailedWindow, is_complete_day


@dataclass(frozen=True)
class ArchiveStatus:
    archive: str
    """Where the archive is, as its storage describes it."""
    totals: dict[str, int]
    """``summarize`` of the checkpoint's device-days."""
    failed: Sequence[FailedWindow]
    """Windows whose last attempt failed and that have not finished since."""
    last_run: dict[str, Any] | None
    """The newest run manifest as saved (None before the first run ends)."""


def summarize(days: DayTotals) -> dict[str, int]:
    """Totals over the checkpoint's device-days (complete: ``models.is_complete_day``)."""
    complete = is_complete_day(days.records, days.day_count, days.windows_failed)
    return {
        "devices": len(np.unique(days.code)),
        "days": len(days),
        "days_complete": int(np.count_nonzero(complete)),
        "windows_finished": int(days.windows_finished.sum()),
        "windows_failed": int(days.windows_failed.sum()),
        "records": int(days.records.sum()),
    }


def last_run_manifest(storage: Storage) -> dict[str, Any] | None:
    """The newest run manifest (run ids sort by their start time)."""
    runs = sorted(key for key in storage.list_files(RUNS_PREFIX) if key.endswith(".json"))
    if not runs:
        return None
    manifest: dict[str, Any] = orjson.loads(storage.read_bytes(runs[-1]))
    return manifest


def read_status(config: HarvestConfig) -> ArchiveStatus:
    """The status of the archive at ``config.out`` (``StorageError`` when there is none)."""
    storage = open_existing_storage(config)
    journal = read_all_checkpoints(storage)
    return ArchiveStatus(
        archive=storage.describe(),
        totals=summarize(journal.day_totals()),
        failed=journal.failed(),
        last_run=last_run_manifest(storage),
    )
