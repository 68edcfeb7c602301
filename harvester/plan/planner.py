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
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from harvester.models import (
    WINDOW,
    DayAvailability,
    Device,
    DeviceDays,
    FinishedWindow,
    WholeSlotDays,
    WindowJob,
)
from harvester.plan.windows import clip_windows, day_bounds, day_overlaps

Piece = tuple[dt.datetime, dt.datetime]
FinishedLookup = Callable[[str, dt.date], Sequence[FinishedWindow]]
#: The day ordinals (``date.toordinal``) of a device that the checkpoint has finished
#: windows of; a superset is fine (those days are decided one by one).
FinishedDays = Callable[[str], Collection[int]]
#: A device's whole-slot days (``CheckpointJournal.whole_days_of``): days the checkpoint holds
#: as whole grid slots sharing one count, which the planner can decide all at once.
WholeDays = Callable[[str], WholeSlotDays]
#: The only days (``date.toordinal``, ascending and unique) of a device that a plan covers:
#: a repair of damaged files plans their days alone.
OnlyDays = Callable[[str], npt.NDArray[np.int64]]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL: Final = _EPOCH.date().toordinal()
_MS: Final = dt.timedelta(milliseconds=1)
_DAY_MS: Final = 86_400_000
_WINDOW_MS: Final = WINDOW // _MS


@dataclass(frozen=True)
class Plan:
    """The work of a run: totals counted up front, windows made when they are asked for.

    Nothing here grows with the number of windows: ``day_jobs`` decides each device-day again
    as the pool reaches it, so a fleet of millions of windows is planned in the memory of its
    availability (``DeviceDays``, 20 bytes a day) and the checkpoint's columns.
    """

    availability: Mapping[Device, Sequence[DayAvailability]] = field(repr=False)
    lo: dt.datetime | None
    hi: dt.datetime | None
    finished_for: FinishedLookup = field(repr=False)
    finished_days: FinishedDays | None = field(repr=False)
    whole_days: WholeDays | None = field(default=None, repr=False)
    only: OnlyDays | None = field(default=None, repr=False)
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
    days_disagreeing: int = 0
    """Device-days whose every window the checkpoint holds, planned against the server's
    current count, whose records yet do not add up to that count (fetched again whole)."""

    @property
    def windows_to_fetch(self) -> int:
        return self.windows_total - self.windows_reused

    def day_jobs(self) -> Iterator[list[WindowJob]]:
        """The windows to fetch, one non-empty list per device-day: device by device (in the
        mapping's order), day by day, by start."""
        for device, available in self.availability.items():
            with_finished = self._with_finished(device)
            ordered = _by_day(available)
            reported_until = _reported_until(ordered)
            settled = _settled_days(ordered, self.whole_days, device, self.lo, self.hi)
            wanted = _wanted(ordered, self.only, device)
            for index, day_info in enumerate(ordered):
                if settled is not None and settled.up_to_date[index]:
                    continue
                if wanted is not None and not wanted[index]:
                    continue
                if not day_overlaps(day_info.day, self.lo, self.hi):
                    continue
                finished: Sequence[FinishedWindow] = ()
                if with_finished is None or day_info.day.toordinal() in with_finished:
                    finished = self.finished_for(device.uuid, day_info.day)
                decision = _decide_day(day_info, self.lo, self.hi, finished)
                if decision.fetch:
                    until = reported_until(day_info)
                    yield [
                        WindowJob(device, day_info.day, start, end, day_info.count, until)
                        for start, end in decision.fetch
                    ]

    def jobs(self) -> Iterator[WindowJob]:
        """``day_jobs`` one window at a time."""
        for group in self.day_jobs():
            yield from group

    def _with_finished(self, device: Device) -> frozenset[int] | None:
        if self.finished_days is None:
            return None
        return frozenset(self.finished_days(device.uuid))


@dataclass(frozen=True)
class _DayDecision:
    pieces: list[Piece]
    fetch: list[Piece]
    #: Every window of the day is held, for the server's current count, yet their records do
    #: not add up to it: fetching the day again is all the harvester can do.
    disagrees: bool = False


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
        return _DayDecision(pieces, list(pieces), disagrees=True)
    return _DayDecision(pieces, [])


def plan_windows(
    availability: Mapping[Device, Sequence[DayAvailability]],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    finished_for: FinishedLookup,
    finished_days: FinishedDays | None = None,
    whole_days: WholeDays | None = None,
    only: OnlyDays | None = None,
) -> Plan:
    """Plan the windows to fetch for ``availability`` (UTC days, per device) inside ``[lo, hi)``.

    ``lo``/``hi`` come from ``windows.local_days_to_utc`` (``None`` = open end);
    ``finished_for(uuid, day)`` returns the checkpoint's finished windows of that UTC day, and
    ``finished_days(uuid)``, when given, the day ordinals that have any: the other days are
    counted from the availability's arrays alone. ``whole_days(uuid)``, when given with
    ``finished_days``, names the days held as whole grid slots: those whose slots hold the
    server's count are counted as up to date from arrays too (``_settled_days``). With
    ``only``, each device's other days are left out, as if they were not available; a day's
    windows are still planned knowing the device's every day (its latest day is not sealed).
    Each device's days must be sorted.
    """
    days = windows_total = windows_reused = days_up_to_date = days_disagreeing = 0
    for device, available in availability.items():
        ordered = _by_day(available)
        wanted = _wanted(ordered, only, device)
        if isinstance(ordered, DeviceDays) and finished_days is not None:
            # Days the checkpoint holds nothing of, and whole-slot days that are up to date,
            # are counted from arrays; the others are decided one by one below.
            held = ascending_unique(np.fromiter(finished_days(device.uuid), np.int64))
            decided = among(ordered.days.astype(np.int64), held)
            fresh = np.where(decided, 0, _piece_slots(ordered, lo, hi)[1])
            if wanted is not None:
                fresh = np.where(wanted, fresh, 0)
                decided &= wanted
            days += int(np.count_nonzero(fresh))
            windows_total += int(fresh.sum())
            settled = _settled_days(ordered, whole_days, device, lo, hi)
            if settled is not None:
                done = settled.up_to_date if wanted is None else settled.up_to_date & wanted
                days += int(np.count_nonzero(done))
                days_up_to_date += int(np.count_nonzero(done))
                windows_total += int(settled.pieces[done].sum())
                windows_reused += int(settled.pieces[done].sum())
                decided &= ~done
            to_decide: Iterable[DayAvailability] = (ordered[int(i)] for i in decided.nonzero()[0])
        else:
            to_decide = (
                ordered
                if wanted is None
                else [d for d, w in zip(ordered, wanted, strict=True) if w]
            )
        for day_info in to_decide:
            if not day_overlaps(day_info.day, lo, hi):
                continue
            finished = finished_for(device.uuid, day_info.day)
            decision = _decide_day(day_info, lo, hi, finished)
            if not decision.pieces:
                continue
            days += 1
            windows_total += len(decision.pieces)
            windows_reused += len(decision.pieces) - len(decision.fetch)
            days_up_to_date += not decision.fetch
            days_disagreeing += decision.disagrees
    return Plan(
        availability=availability,
        lo=lo,
        hi=hi,
        finished_for=finished_for,
        finished_days=finished_days,
        whole_days=whole_days,
        only=only,
        devices=len(availability),
        days=days,
        windows_total=windows_total,
        windows_reused=windows_reused,
        days_up_to_date=days_up_to_date,
        days_disagreeing=days_disagreeing,
    )


def days_maybe_fetched(
    available: Sequence[DayAvailability],
    whole_days: WholeDays | None,
    device: Device,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
) -> npt.NDArray[np.int64]:
    """The days (``date.toordinal``, ascending) of a device that a plan may fetch windows of:
    every day with a window in range, but the whole-slot days it finds up to date from
    arrays (``_settled_days``), which it never decides one by one. A superset of what
    ``Plan.day_jobs`` yields for the device: a run writes into no other day's file."""
    ordered = _by_day(available)
    if not isinstance(ordered, DeviceDays):
        return np.array(
            [d.day.toordinal() for d in ordered if day_overlaps(d.day, lo, hi)], np.int64
        )
    maybe = _piece_slots(ordered, lo, hi)[1] > 0
    settled = _settled_days(ordered, whole_days, device, lo, hi)
    if settled is not None:
        maybe &= ~settled.up_to_date
    days: npt.NDArray[np.int64] = ordered.days.astype(np.int64)[maybe]
    return days


def _wanted(
    ordered: Sequence[DayAvailability], only: OnlyDays | None, device: Device
) -> npt.NDArray[np.bool_] | None:
    """Per day of ``ordered``: is it among ``only``'s days of the device (None: every day is)."""
    if only is None:
        return None
    if isinstance(ordered, DeviceDays):
        return among(ordered.days.astype(np.int64), only(device.uuid))
    return among(np.array([d.day.toordinal() for d in ordered], np.int64), only(device.uuid))


def _by_day(available: Sequence[DayAvailability]) -> Sequence[DayAvailability]:
    if isinstance(available, DeviceDays):
        return available
    return sorted(available, key=lambda a: a.day)


def _reported_until(
    available: Sequence[DayAvailability],
) -> Callable[[DayAvailability], dt.datetime]:
    """How far the device is known to have reported on a day: the day's last record on its
    latest day; the day's end before, since it has data on a later day (so all its windows are
    sealed and late data is caught by the count rule at once)."""
    latest = available[-1].day if available else None

    def until(day_info: DayAvailability) -> dt.datetime:
        if day_info.day == latest:
            return day_info.last_record
        return day_bounds(day_info.day)[1]

    return until


@dataclass(frozen=True)
class _Settled:
    """Per available day of a device: is it a whole-slot day ``_decide_day`` would find up to
    date, and how many pieces it has."""

    up_to_date: npt.NDArray[np.bool_]
    pieces: npt.NDArray[np.int64]


def _settled_days(
    available: Sequence[DayAvailability],
    whole_days: WholeDays | None,
    device: Device,
    lo: dt.datetime | None,
    hi: dt.datetime | None,
) -> _Settled | None:
    """The whole-slot days that need no fetch, decided from arrays as ``_decide_day`` would:
    every piece lies in a held slot planned against today's count, and when the pieces hold
    the whole day, the held slots are exactly the pieces and their records add up to the
    count. Anything else (a count that moved, a slot missing, a partial sum to check) is left
    to ``_decide_day``."""
    if whole_days is None or not isinstance(available, DeviceDays):
        return None
    whole = whole_days(device.uuid)
    nothing = np.zeros(len(available), np.bool_)
    if len(whole.days) == 0:
        return _Settled(nothing, np.zeros(len(available), np.int64))
    at = np.minimum(np.searchsorted(whole.days, available.days), len(whole.days) - 1)
    held = whole.days[at] == available.days
    # A day's pieces are consecutive grid slots: ``count`` of them from ``first``, as a mask.
    first, count = _piece_slots(available, lo, hi)
    pieces = ((np.int64(1) << count) - 1) << np.where(count > 0, first, 0)
    mask = np.where(held, whole.mask[at].astype(np.int64), 0)
    covered = held & (pieces != 0) & ((pieces & ~mask) == 0)
    same_count = held & (whole.day_count[at] == available.counts)
    holds_whole_day = (count > 0) & (first == 0)
    if lo is not None:
        holds_whole_day &= _ms(lo) <= (available.days.astype(np.int64) - _EPOCH_ORDINAL) * _DAY_MS
    if hi is not None:
        holds_whole_day &= _ms(hi) > available.last_ms
    adds_up = ~holds_whole_day | ((pieces == mask) & (whole.records[at] == available.counts))
    return _Settled(covered & same_count & adds_up, count)


def _piece_slots(
    available: DeviceDays, lo: dt.datetime | None, hi: dt.datetime | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per day, the first grid slot of the windows ``_decide_day`` plans when the checkpoint
    holds none of the day, and how many (consecutive) there are: grid slots meeting
    ``[lo, hi)`` whose clipped start is at or before the last record."""
    day_start = (available.days.astype(np.int64) - _EPOCH_ORDINAL) * _DAY_MS
    day_end = day_start + _DAY_MS
    start = day_start if lo is None else np.maximum(day_start, _ms(lo))
    end = day_end if hi is None else np.minimum(day_end, _ms(hi))
    first = (start - day_start) // _WINDOW_MS
    last_slot = (end - day_start - 1) // _WINDOW_MS
    last_started = (available.last_ms - day_start) // _WINDOW_MS
    count = np.minimum(last_slot, last_started) - first + 1
    usable = (start < end) & (start <= available.last_ms)
    return first, np.where(usable, np.maximum(count, 0), 0)


def ascending_unique(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``np.unique(values)``, without its sort when they come in order (as the checkpoint's
    days of a device do)."""
    if len(values) and bool(np.all(values[1:] >= values[:-1])):
        kept: npt.NDArray[np.int64] = values[np.append(True, values[1:] != values[:-1])]
        return kept
    return np.unique(values)


def among(values: npt.NDArray[np.int64], pool: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which of ``values`` are in ``pool`` (sorted and unique: ``ascending_unique``):
    ``np.isin`` without its sort of both (a fleet's planning asks it twice a device)."""
    if not len(pool):
        return np.zeros(len(values), np.bool_)
    found: npt.NDArray[np.bool_] = (
        pool[np.minimum(np.searchsorted(pool, values), len(pool) - 1)] == values
    )
    return found


def _ms(t: dt.datetime) -> int:
    return (t - _EPOCH) // _MS


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
