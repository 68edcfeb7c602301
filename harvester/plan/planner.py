"""Devices, their available UTC days and the checkpoint → the windows to fetch, in order. PURE.

A day's windows are the grid slots clipped to the requested range, minus slots that start
after the day's last record (nothing is there yet). A window already in the checkpoint is
reused when it still tells the truth (see docs/ARCHITECTURE.md, "Sealed windows"):

- a finished window planned against the same server ``count`` as now, or a sealed one
  (the device had moved past its end, so it will not grow), covers the pieces inside it;
- if every piece is covered but the count differs from the newest count those windows were
  planned against, the new records are late data inside sealed windows: the whole day is
  fetched again;
- if the pieces hold every record of the day (the range starts by the day's start and
  reaches past its last record) and the checkpoint's record counts do not add up to the
  server's count, the checkpoint disagrees with the server: the whole day is fetched again.

Comparing with the newest count rather than with every window's count matters for the day
that was in progress: its early windows keep the count of the run that fetched them, and must
not send the whole day back to the queue once it has stopped changing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from harvester.models import DayAvailability, Device, FinishedWindow, WindowJob
from harvester.plan.windows import clip_windows, day_bounds, day_overlaps

Piece = tuple[dt.datetime, dt.datetime]
FinishedLookup = Callable[[str, dt.date], Sequence[FinishedWindow]]


@dataclass(frozen=True)
class Plan:
    """The work of a run and how much of the range was already done.

    ``jobs`` run device by device, day by day, then by start, so one device-day's windows are
    contiguous (the pool writes a day once all its windows are in).
    """

    jobs: list[WindowJob] = field(default_factory=list)
    devices: int = 0
    """Devices considered (given to the planner, with or without data in range)."""
    days: int = 0
    """Device-days in range with data to cover (at least one window, fetched or reused)."""
    windows_total: int = 0
    """Windows covering those days: to fetch plus reused."""
    windows_reused: int = 0
    """Windows skipped because the checkpoint already holds them."""
    days_up_to_date: int = 0
    """Device-days with nothing to fetch: the checkpoint holds every window, its counts agree
    with the server's (``models.is_complete_day`` is what `status` calls complete)."""

    def by_day(self) -> dict[tuple[str, dt.date], list[WindowJob]]:
        """The jobs grouped per (device uuid, UTC day), in plan order."""
        groups: dict[tuple[str, dt.date], list[WindowJob]] = {}
        for job in self.jobs:
            groups.setdefault((job.device.uuid, job.day), []).append(job)
        return groups


@dataclass(frozen=True)
class _DayDecision:
    pieces: list[Piece]
    fetch: list[Piece]


def _reusable(
    piece: Piece, finished: Sequence[FinishedWindow], count: int
) -> FinishedWindow | None:
    """A finished window that covers ``piece`` and can stand for it, preferring today's count."""
    start, end = piece
    covering = [f for f in finished if f.start <= start and f.end >= end]
    same_count = [f for f in covering if f.day_count == count]
    if same_count:
        return same_count[0]
    sealed = [f for f in covering if f.sealed]
    return sealed[0] if sealed else None


def _decide_day(
    availability: DayAvailability,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    finished: Sequence[FinishedWindow],
) -> _DayDecision:
    count, last_record = availability.count, availability.last_record
    pieces = [
        (start, end)
        for start, end in clip_windows(availability.day, lo, hi)
        if start <= last_record
    ]
    fetch: list[Piece] = []
    reused: dict[tuple[dt.datetime, dt.datetime], FinishedWindow] = {}
    for piece in pieces:
        window = _reusable(piece, finished, count)
        if window is None:
            fetch.append(piece)
        else:
            reused[window.start, window.end] = window
    if fetch or not pieces:
        return _DayDecision(pieces, fetch)
    # Every piece sits in a reusable window. The newest of them was planned against the
    # highest count; if the server's count moved since, the new records are late data inside
    # sealed windows, which only a fetch of the whole day will find.
    if max(f.day_count for f in reused.values()) != count:
        return _DayDecision(pieces, list(pieces))
    # When the pieces hold every record of the day (the range starts by the day's start and
    # reaches past its last record), their record counts must add up to the server's.
    day_start, _ = day_bounds(availability.day)
    holds_whole_day = pieces[0][0] == day_start and (hi is None or hi > last_record)
    if holds_whole_day and sum(f.records for f in reused.values()) != count:
        return _DayDecision(pieces, list(pieces))
    return _DayDecision(pieces, [])


def plan_windows(
    availability: Mapping[Device, Sequence[DayAvailability]],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    finished_for: FinishedLookup,
) -> Plan:
    """Plan the windows to fetch for ``availability`` (UTC days, per device) inside ``[lo, hi)``.

    ``lo``/``hi`` come from ``windows.local_days_to_utc`` (``None`` = open end);
    ``finished_for(uuid, day)`` returns the checkpoint's finished windows of that UTC day.
    Devices keep the mapping's order; days and windows are sorted.
    """
    jobs: list[WindowJob] = []
    days = windows_total = windows_reused = days_up_to_date = 0
    for device, available in availability.items():
        latest_day = max((a.day for a in available), default=None)
        for day_info in sorted(available, key=lambda a: a.day):
            if not day_overlaps(day_info.day, lo, hi):
                continue
            decision = _decide_day(day_info, lo, hi, finished_for(device.uuid, day_info.day))
            if not decision.pieces:
                continue
            days += 1
            windows_total += len(decision.pieces)
            windows_reused += len(decision.pieces) - len(decision.fetch)
            days_up_to_date += not decision.fetch
            jobs.extend(
                WindowJob(
                    device=device,
                    day=day_info.day,
                    start=start,
                    end=end,
                    day_count=day_info.count,
                    # A device with data on a later day has moved past this whole day: all
                    # its windows are sealed, so late data is caught by the count rule at once.
                    reported_until=(
                        day_info.last_record
                        if day_info.day == latest_day
                        else day_bounds(day_info.day)[1]
                    ),
                )
                for start, end in decision.fetch
            )
    return Plan(
        jobs=jobs,
        devices=len(availability),
        days=days,
        windows_total=windows_total,
        windows_reused=windows_reused,
        days_up_to_date=days_up_to_date,
    )


def estimate_seconds(windows: int, rps: float, concurrency: int, latency_s: float) -> float:
    """Wall time to fetch ``windows`` at most ``rps`` requests/s and ``concurrency`` in flight.

    Throughput is bounded by the rate and by concurrency ÷ latency, whichever is lower; a
    non-positive ``rps`` or ``latency_s`` means that bound does not apply.
    """
    if windows <= 0:
        return 0.0
    per_window = 0.0
    if rps > 0:
        per_window = 1.0 / rps
    if latency_s > 0:
        per_window = max(per_window, latency_s / max(concurrency, 1))
    return windows * per_window
