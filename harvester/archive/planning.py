"""Plans against the archive: the checkpoint's windows trusted only where their files are whole.

``make_plan`` looks at the vouched files a plan may write into (or every one, for ``plan``'s
preview) before planning; ``repair_plan`` looks at the others, in a thread while a run fetches,
and plans the days of the damaged ones alone; ``days_disagreeing`` counts, at a run's end, the
days held whole whose records do not add up to the server's count. Each reads storage: call
them from a thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.integrity import (
    DayKey,
    FileSet,
    damaged_days,
    trusting_only_intact,
    whole_days_only_intact,
)
from harvester.archive.storage import Storage
from harvester.config import HarvestConfig
from harvester.models import DayAvailability, Device
from harvester.plan.planner import OnlyDays, Plan, plan_windows
from harvester.plan.windows import local_days_to_utc


def make_plan(
    config: HarvestConfig,
    availability: Mapping[Device, Sequence[DayAvailability]],
    journal: CheckpointJournal,
    storage: Storage,
    files: FileSet = "all",
) -> Plan:
    """The windows to fetch; a day whose file is missing or damaged is fetched again whole.

    Reads a few bytes of every vouched file among ``files`` (a run looks at the others while
    it fetches: ``repair_plan``): call it from a thread.
    """
    lo, hi = local_days_to_utc(config.since, config.until, config.zone)
    damaged = _damaged(storage, availability, journal, lo, hi, files)
    return _trusting_intact(availability, lo, hi, journal, damaged)


def repair_plan(
    config: HarvestConfig,
    availability: Mapping[Device, Sequence[DayAvailability]],
    journal: CheckpointJournal,
    storage: Storage,
    stop: Callable[[], bool],
) -> Plan:
    """The days of the damaged files among those ``make_plan(files="written")`` left for
    later (a run never writes them), fetched again whole, and no other day. Looks at every
    such file (call it from a thread, while the run fetches); ``Interrupted`` once ``stop()``.
    """
    lo, hi = local_days_to_utc(config.since, config.until, config.zone)
    damaged = _damaged(storage, availability, journal, lo, hi, "unwritten", stop)
    days: dict[str, list[int]] = {}
    for owner, day in damaged:
        days.setdefault(owner, []).append(day.toordinal())
    only = {owner: np.unique(np.array(ordinals, np.int64)) for owner, ordinals in days.items()}
    return _trusting_intact(
        {device: available for device, available in availability.items() if device.uuid in only},
        lo,
        hi,
        journal,
        damaged,
        only.__getitem__,
    )


def _damaged(
    storage: Storage,
    availability: Mapping[Device, Sequence[DayAvailability]],
    journal: CheckpointJournal,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    files: FileSet,
    stop: Callable[[], bool] = lambda: False,
) -> set[DayKey]:
    return damaged_days(
        storage,
        availability,
        journal.finished_for,
        lo,
        hi,
        journal.finished_days,
        journal.whole_days_of,
        files,
        stop,
    )


def _trusting_intact(
    availability: Mapping[Device, Sequence[DayAvailability]],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    journal: CheckpointJournal,
    damaged: set[DayKey],
    only: OnlyDays | None = None,
) -> Plan:
    """The plan with the checkpoint's windows of ``damaged`` days not trusted."""
    return plan_windows(
        availability,
        lo,
        hi,
        trusting_only_intact(journal.finished_for, damaged),
        journal.finished_days,
        whole_days_only_intact(journal.whole_days_of, damaged),
        only,
    )


def days_disagreeing(
    config: HarvestConfig,
    availability: Mapping[Device, Sequence[DayAvailability]],
    journal: CheckpointJournal,
) -> int:
    """Device-days the checkpoint now holds whole, for the server's current count, whose
    records do not add up to that count: what the server said it has but did not return (or
    returned twice). The next run fetches them again; this one must not report success."""
    lo, hi = local_days_to_utc(config.since, config.until, config.zone)
    plan = plan_windows(
        availability, lo, hi, journal.finished_for, journal.finished_days, journal.whole_days_of
    )
    return plan.days_disagreeing
