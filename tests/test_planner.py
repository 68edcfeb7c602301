"""The planner: which windows a run fetches, given the server's days and the checkpoint."""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.models import (
    DayAvailability,
    Device,
    DeviceDays,
    FinishedWindow,
    WholeSlotDays,
    WindowJob,
)
from harvester.plan.planner import (
    Plan,
    among,
    ascending_unique,
    days_maybe_fetched,
    estimate_seconds,
    plan_windows,
)
from harvester.plan.windows import day_bounds, grid_slots, local_days_to_utc

UTC = dt.UTC
SPOD = Device(uuid="1041", type="SPOD", name="METEC 1041")
RAMP = Device(uuid="2001", type="RAMP", name="RAMP 2001")
DAY = dt.date(2024, 2, 5)


def by_day(plan: Plan) -> dict[tuple[str, dt.date], list[WindowJob]]:
    return {(group[0].device.uuid, group[0].day): group for group in plan.day_jobs()}


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(
        hours=hour, minutes=minute
    )


@dataclass
class FakeServer:
    """Record times per device and UTC day; answers like get{TYPE}DataAvailableDates."""

    records: dict[Device, list[dt.datetime]] = field(default_factory=dict)

    def add(self, device: Device, times: Iterable[dt.datetime]) -> None:
        self.records[device] = sorted([*self.records.get(device, []), *times])

    def availability(self) -> dict[Device, list[DayAvailability]]:
        result: dict[Device, list[DayAvailability]] = {}
        for device, times in self.records.items():
            days = []
            for day, group in itertools.groupby(times, key=lambda t: t.date()):
                in_day = list(group)
                days.append(DayAvailability(day=day, count=len(in_day), last_record=in_day[-1]))
            result[device] = days
        return result

    def count_between(self, device: Device, start: dt.datetime, end: dt.datetime) -> int:
        times = self.records.get(device, [])
        return bisect.bisect_left(times, end) - bisect.bisect_left(times, start)


@dataclass
class FakeCheckpoint:
    """Finished windows by (uuid, UTC day); a later entry with the same bounds replaces one."""

    entries: dict[tuple[str, dt.date], dict[tuple[dt.datetime, dt.datetime], FinishedWindow]] = (
        field(default_factory=dict)
    )

    def finished_for(self, uuid: str, day: dt.date) -> Sequence[FinishedWindow]:
        return list(self.entries.get((uuid, day), {}).values())

    def finished_days(self, uuid: str) -> set[int]:
        return {day.toordinal() for (owner, day) in self.entries if owner == uuid}

    def whole_days_of(self, uuid: str) -> WholeSlotDays:
        """The days whose windows are whole grid slots sharing one count and sealed flag
        (what ``CheckpointJournal.whole_days_of`` holds compactly), worked out plainly."""
        rows = []
        for (owner, day), windows in sorted(self.entries.items()):
            grid = grid_slots(day)
            slots = [
                grid.index((w.start, w.end)) if (w.start, w.end) in grid else None
                for w in windows.values()
            ]
            flags = {(w.day_count, w.sealed) for w in windows.values()}
            if owner == uuid and windows and None not in slots and len(flags) == 1:
                ((count, sealed),) = flags
                mask = sum(1 << slot for slot in slots if slot is not None)
                total = sum(w.records for w in windows.values())
                rows.append((day.toordinal(), mask, count, sealed, total))
        columns = list(zip(*rows, strict=True)) or [(), (), (), (), ()]
        return WholeSlotDays(
            np.array(columns[0], np.int32),
            np.array(columns[1], np.uint16),
            np.array(columns[2], np.int64),
            np.array(columns[3], np.bool_),
            np.array(columns[4], np.int64),
        )

    def finish(self, job: WindowJob, records: int) -> None:
        window = FinishedWindow(
            device_uuid=job.device.uuid,
            device_type=job.device.type,
            start=job.start,
            end=job.end,
            records=records,
            day_count=job.day_count,
            sealed=job.sealed,
        )
        self.entries.setdefault((job.device.uuid, job.day), {})[job.start, job.end] = window


def fetch_all(plan: Plan, server: FakeServer, checkpoint: FakeCheckpoint) -> list[WindowJob]:
    """Run a plan against the fake server: every job succeeds with the server's rows. Returns
    the jobs run (a plan decides each day when it reaches it, so they are taken first)."""
    jobs = list(plan.jobs())
    for job in jobs:
        checkpoint.finish(job, server.count_between(job.device, job.start, job.end))
    return jobs


def every_minute(start: dt.datetime, end: dt.datetime, step_s: int = 60) -> list[dt.datetime]:
    span = int((end - start).total_seconds())
    return [start + dt.timedelta(seconds=s) for s in range(0, span, step_s)]


def spans(jobs: Iterable[WindowJob]) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(j.start, j.end) for j in jobs]


def test_fresh_plan_covers_every_slot_of_every_day_with_data() -> None:
    """With an empty checkpoint every slot of each day with data is planned, in order."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(0, day=DAY + dt.timedelta(days=2))))
    checkpoint = FakeCheckpoint()
    plan = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert spans(list(plan.jobs())) == grid_slots(DAY) + grid_slots(DAY + dt.timedelta(days=1))
    assert (plan.devices, plan.days, plan.windows_total) == (1, 2, 24)
    assert (plan.windows_reused, plan.days_up_to_date) == (0, 0)
    assert all(j.day_count == 1440 for j in list(plan.jobs()))
    # The device has moved past the first day: all sealed. On its latest day the last slot
    # ends at midnight, after the last record (23:59): it stays open.
    assert [j.sealed for j in list(plan.jobs())] == [True] * 12 + [True] * 11 + [False]


def test_second_plan_after_everything_finished_is_empty() -> None:
    """Recording every job as finished at unchanged counts leaves nothing to fetch."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(24)))
    server.add(RAMP, every_minute(at(3), at(15), step_s=7))  # slots 00:00-16:00
    checkpoint = FakeCheckpoint()
    first = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    fetch_all(first, server, checkpoint)
    second = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert list(second.jobs()) == []
    assert second.windows_total == first.windows_total == 12 + 8
    assert second.windows_reused == second.windows_total
    assert second.days_up_to_date == second.days == 2


def test_slots_after_the_last_record_are_not_planned() -> None:
    """The server's present clips the plan: slots starting after the last record wait."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(9, 31)))
    plan = plan_windows(server.availability(), None, None, FakeCheckpoint().finished_for)
    assert spans(list(plan.jobs())) == grid_slots(DAY)[:5]
    assert [j.sealed for j in list(plan.jobs())] == [True] * 4 + [False]


def test_day_in_progress_refetches_only_the_unsealed_window_and_new_slots() -> None:
    """When today's count grows, sealed windows are reused; the open one and new ones are not."""
    server = FakeServer()
    checkpoint = FakeCheckpoint()
    server.add(SPOD, every_minute(at(0), at(9, 31)))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    server.add(SPOD, every_minute(at(9, 31), at(13, 11)))
    plan = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert spans(list(plan.jobs())) == grid_slots(DAY)[4:7]
    assert (plan.windows_total, plan.windows_reused) == (7, 4)


def test_finished_day_in_progress_is_not_fetched_again_once_it_stops_changing() -> None:
    """After the catch-up run, windows of older counts stay trusted: no third fetch of the day."""
    server = FakeServer()
    checkpoint = FakeCheckpoint()
    server.add(SPOD, every_minute(at(0), at(9, 31)))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    server.add(SPOD, every_minute(at(9, 31), at(24)))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    third = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert list(third.jobs()) == []
    assert third.days_up_to_date == 1


def test_late_data_inside_sealed_windows_refetches_the_whole_day() -> None:
    """A count change with every window in range sealed means late data: all are fetched again."""
    server = FakeServer()
    checkpoint = FakeCheckpoint()
    server.add(SPOD, every_minute(at(0), at(24)))
    hi = at(20)
    fetch_all(
        plan_windows(server.availability(), None, hi, checkpoint.finished_for), server, checkpoint
    )
    server.add(SPOD, [at(5, 0) + dt.timedelta(seconds=30)])
    plan = plan_windows(server.availability(), None, hi, checkpoint.finished_for)
    assert spans(list(plan.jobs())) == grid_slots(DAY)[:10]
    assert all(j.day_count == 1441 for j in list(plan.jobs()))
    fetch_all(plan, server, checkpoint)
    assert not list(plan_windows(server.availability(), None, hi, checkpoint.finished_for).jobs())


def test_late_data_in_a_finished_day_is_found_within_two_runs() -> None:
    """The open last slot is fetched first; the record sum then exposes the late record."""
    server = FakeServer()
    checkpoint = FakeCheckpoint()
    server.add(SPOD, every_minute(at(0), at(24)))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    server.add(SPOD, [at(5, 0) + dt.timedelta(seconds=30)])
    first = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert spans(list(first.jobs())) == grid_slots(DAY)[-1:]
    fetch_all(first, server, checkpoint)
    second = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert spans(list(second.jobs())) == grid_slots(DAY)
    fetch_all(second, server, checkpoint)
    assert not list(plan_windows(server.availability(), None, None, checkpoint.finished_for).jobs())


def test_late_data_during_catch_up_is_found_by_the_record_sum() -> None:
    """Late data in a sealed window while the day also grew is caught by counting records."""
    server = FakeServer()
    checkpoint = FakeCheckpoint()
    server.add(SPOD, every_minute(at(0), at(9, 31)))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    server.add(SPOD, [*every_minute(at(9, 31), at(24)), at(1, 0) + dt.timedelta(seconds=1)])
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    third = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert spans(list(third.jobs())) == grid_slots(DAY)


def test_checkpoint_that_disagrees_with_the_server_count_refetches_the_day() -> None:
    """All windows reused at today's count but their records sum short: fetch the day again,
    and count the day as disagreeing (the run reports it)."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(24)))
    checkpoint = FakeCheckpoint()
    plan = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    for job in list(plan.jobs()):
        checkpoint.finish(job, 119 if job.start == at(6) else 120)
    assert plan.days_disagreeing == 0
    again = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert spans(list(again.jobs())) == grid_slots(DAY)
    assert again.days_disagreeing == 1


def test_failed_windows_are_planned_again() -> None:
    """A window that never finished (it failed) is in the next plan; the finished ones are not."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(24)))
    checkpoint = FakeCheckpoint()
    plan = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    failed = {at(4), at(18)}
    for job in list(plan.jobs()):
        if job.start not in failed:
            checkpoint.finish(job, server.count_between(SPOD, job.start, job.end))
    again = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert [j.start for j in list(again.jobs())] == sorted(failed)
    assert again.windows_reused == 10


def test_clipped_pieces_of_a_narrower_range_do_not_cover_wider_pieces() -> None:
    """Edge pieces fetched for a +5:30 range are not mistaken for the full slots later asked."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(0, day=DAY + dt.timedelta(days=2))))
    checkpoint = FakeCheckpoint()
    kolkata = ZoneInfo("Asia/Kolkata")
    lo, hi = local_days_to_utc(DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=1), kolkata)
    narrow = plan_windows(server.availability(), lo, hi, checkpoint.finished_for)
    narrow_jobs = list(narrow.jobs())
    assert narrow_jobs[0].start == at(18, 30)
    assert narrow_jobs[-1].end == at(18, 30, day=DAY + dt.timedelta(days=1))
    fetch_all(narrow, server, checkpoint)
    wide = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    next_day = DAY + dt.timedelta(days=1)
    # Day one: 00:00-18:00 never fetched, 18:00-20:00 only from 18:30; day two: 18:00-20:00
    # only up to 18:30, and 20:00-24:00 never fetched.
    assert spans(list(wide.jobs())) == [
        *grid_slots(DAY)[:10],
        (at(18, day=next_day), at(20, day=next_day)),
        *grid_slots(next_day)[10:],
    ]
    assert wide.windows_reused == 2 + 9


def test_days_outside_the_range_are_skipped() -> None:
    """Only days overlapping [lo, hi) are planned or counted."""
    server = FakeServer()
    server.add(SPOD, every_minute(at(0), at(0, day=DAY + dt.timedelta(days=5)), step_s=600))
    lo, hi = at(0, day=DAY + dt.timedelta(days=1)), at(0, day=DAY + dt.timedelta(days=3))
    plan = plan_windows(server.availability(), lo, hi, FakeCheckpoint().finished_for)
    assert plan.days == 2
    assert {j.day for j in plan.jobs()} == {
        DAY + dt.timedelta(days=1),
        DAY + dt.timedelta(days=2),
    }


def test_jobs_are_contiguous_per_device_day_and_grouped_by_day() -> None:
    """Jobs run device by device, day by day, by start; day_jobs() yields them in that order."""
    server = FakeServer()
    server.add(RAMP, every_minute(at(0), at(0, day=DAY + dt.timedelta(days=2)), step_s=900))
    server.add(SPOD, every_minute(at(0), at(0, day=DAY + dt.timedelta(days=2)), step_s=900))
    plan = plan_windows(server.availability(), None, None, FakeCheckpoint().finished_for)
    keys = [(j.device.uuid, j.day) for j in list(plan.jobs())]
    assert keys == sorted(keys, key=lambda k: (k[0] != RAMP.uuid, k[1]))
    groups = by_day(plan)
    assert list(groups) == [k for k, _ in itertools.groupby(keys)]
    assert all(spans(g) == grid_slots(day) for (_, day), g in groups.items())


@pytest.mark.parametrize(
    ("windows", "rps", "concurrency", "latency_s", "expected"),
    [
        (0, 10.0, 8, 0.5, 0.0),
        (100, 10.0, 8, 0.1, 10.0),  # rate-bound: 10/s beats 8 / 0.1 s = 80/s
        (100, 100.0, 4, 0.2, 5.0),  # latency-bound: 4 / 0.2 s = 20/s beats 100/s
        (100, 0.0, 4, 0.2, 5.0),  # no rate limit
        (100, 20.0, 4, 0.0, 5.0),  # no latency
    ],
)
def test_estimate_is_bounded_by_rate_and_by_concurrency_over_latency(
    windows: int, rps: float, concurrency: int, latency_s: float, expected: float
) -> None:
    """The estimate uses the lower of rps and concurrency ÷ latency."""
    assert estimate_seconds(windows, rps, concurrency, latency_s) == pytest.approx(expected)


# --- properties -------------------------------------------------------------------------

ZONES = ["UTC", "America/Chicago", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham"]
BASE = dt.datetime(2024, 3, 8, tzinfo=UTC)


@st.composite
def record_times(draw: st.DrawFn, days: int = 4) -> list[dt.datetime]:
    """Bursts of records at random places over a few UTC days (gaps, idle slots, empty days)."""
    bursts = draw(
        st.lists(st.tuples(st.integers(0, days * 86_400 - 1), st.integers(1, 40)), max_size=12)
    )
    step = draw(st.sampled_from([1, 60, 600]))
    times = {
        BASE + dt.timedelta(seconds=min(start + i * step, days * 86_400 - 1))
        for start, n in bursts
        for i in range(n)
    }
    return sorted(times)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A local-day range in a random zone around the data, either end possibly open."""
    tz = ZoneInfo(draw(st.sampled_from(ZONES)))
    first = BASE.date() + dt.timedelta(days=draw(st.integers(-1, 3)))
    last = first + dt.timedelta(days=draw(st.integers(0, 3)))
    since = draw(st.sampled_from([first, None]))
    until = draw(st.sampled_from([last, None]))
    return local_days_to_utc(since, until, tz)


def _plan_and_fetch(
    server: FakeServer, lo: dt.datetime | None, hi: dt.datetime | None, cp: FakeCheckpoint
) -> tuple[Plan, list[WindowJob]]:
    plan = plan_windows(server.availability(), lo, hi, cp.finished_for)
    return plan, fetch_all(plan, server, cp)


def _check_tiling(
    jobs_run: list[WindowJob],
    avail: Mapping[Device, Sequence[DayAvailability]],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
) -> None:
    groups: dict[tuple[str, dt.date], list[WindowJob]] = {}
    for job in jobs_run:
        groups.setdefault((job.device.uuid, job.day), []).append(job)
    for device, days in avail.items():
        for a in days:
            start, end = day_bounds(a.day)
            start = start if lo is None else max(start, lo)
            end = end if hi is None else min(end, hi)
            jobs = groups.get((device.uuid, a.day), [])
            if start >= end or start > a.last_record:
                assert jobs == []
                continue
            assert jobs[0].start == start
            assert jobs[-1].start <= a.last_record < jobs[-1].end or jobs[-1].end == end
            for prev, nxt in itertools.pairwise(jobs):
                assert prev.end == nxt.start
            assert all(j.end - j.start <= dt.timedelta(hours=2) for j in jobs)


@settings(max_examples=150, deadline=None)
@given(first=record_times(), second=record_times(), late=record_times(days=2), rng=ranges())
def test_repeated_runs_converge_on_exactly_the_servers_records(
    first: list[dt.datetime],
    second: list[dt.datetime],
    late: list[dt.datetime],
    rng: tuple[dt.datetime | None, dt.datetime | None],
) -> None:
    """A fresh plan tiles the range; after new and late data, runs converge in at most three
    rounds to an archive whose windows count exactly the server's records of whole days, and
    then plan nothing."""
    lo, hi = rng
    server, checkpoint = FakeServer(), FakeCheckpoint()
    cut = BASE + dt.timedelta(days=2, hours=7, minutes=13)
    server.add(SPOD, [t for t in first if t < cut])
    fresh, jobs = _plan_and_fetch(server, lo, hi, checkpoint)
    _check_tiling(jobs, server.availability(), lo, hi)
    assert fresh.windows_reused == 0
    assert fresh.windows_total == fresh.windows_to_fetch == len(jobs)

    old = set(server.records.get(SPOD, []))
    server.add(SPOD, [t for t in second if t >= cut and t not in old])
    server.add(SPOD, [t for t in late if t < cut and t not in old and t not in second])
    rounds = 0
    while _plan_and_fetch(server, lo, hi, checkpoint)[1]:
        rounds += 1
        assert rounds <= 3
    final = plan_windows(server.availability(), lo, hi, checkpoint.finished_for)
    assert final.days_up_to_date == final.days
    assert final.windows_reused == final.windows_total
    for a in server.availability().get(SPOD, []):
        day_start, day_end = day_bounds(a.day)
        whole_day = (lo is None or lo <= day_start) and (hi is None or hi >= day_end)
        if whole_day:
            stored = checkpoint.finished_for(SPOD.uuid, a.day)
            assert sum(f.records for f in stored) == a.count


@settings(max_examples=150, deadline=None)
@given(
    first=record_times(),
    more=record_times(),
    rng=ranges(),
    done=st.lists(st.booleans(), min_size=1, max_size=60),
    tamper=st.integers(0, 50),
)
def test_compact_availability_plans_exactly_what_the_day_objects_plan(
    first: list[dt.datetime],
    more: list[dt.datetime],
    rng: tuple[dt.datetime | None, dt.datetime | None],
    done: list[bool],
    tamper: int,
) -> None:
    """Days held as ``DeviceDays`` arrays, counted without deciding the days the checkpoint
    has nothing of — and, given ``whole_days``, without deciding the whole-slot days that are
    up to date — give the same totals and the same windows as deciding every day, whatever
    part of an earlier plan was fetched and whatever arrived since."""
    lo, hi = rng
    server, checkpoint = FakeServer(), FakeCheckpoint()
    server.add(SPOD, first)
    server.add(RAMP, first[::2])
    earlier = list(plan_windows(server.availability(), lo, hi, checkpoint.finished_for).jobs())
    for job, fetched in zip(earlier, itertools.cycle(done), strict=False):
        if fetched:
            checkpoint.finish(job, server.count_between(job.device, job.start, job.end))
    old = set(server.records.get(SPOD, []))
    server.add(SPOD, [t for t in more if t not in old])
    objects = server.availability()
    compact = {device: DeviceDays.of(days) for device, days in objects.items()}
    _assert_same_plans(objects, compact, lo, hi, checkpoint)
    # Once everything is fetched most days are whole-slot days that are up to date; one of
    # them is then made to disagree with the server (its records no longer add up).
    fetch_all(plan_windows(objects, lo, hi, checkpoint.finished_for), server, checkpoint)
    _assert_same_plans(objects, compact, lo, hi, checkpoint)
    if checkpoint.entries:
        key = sorted(checkpoint.entries)[tamper % len(checkpoint.entries)]
        bounds, window = next(iter(checkpoint.entries[key].items()))
        checkpoint.entries[key][bounds] = dataclasses.replace(window, records=window.records + 1)
        _assert_same_plans(objects, compact, lo, hi, checkpoint)


def _assert_same_plans(
    objects: Mapping[Device, Sequence[DayAvailability]],
    compact: Mapping[Device, Sequence[DayAvailability]],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    checkpoint: FakeCheckpoint,
) -> None:
    by_objects = plan_windows(objects, lo, hi, checkpoint.finished_for)
    by_arrays = plan_windows(
        compact, lo, hi, checkpoint.finished_for, finished_days=checkpoint.finished_days
    )
    by_whole_days = plan_windows(
        compact,
        lo,
        hi,
        checkpoint.finished_for,
        finished_days=checkpoint.finished_days,
        whole_days=checkpoint.whole_days_of,
    )
    totals = ("devices", "days", "windows_total", "windows_reused", "days_up_to_date")
    totals += ("days_disagreeing",)
    for plan in (by_arrays, by_whole_days):
        assert [getattr(plan, name) for name in totals] == [
            getattr(by_objects, name) for name in totals
        ]
        assert list(plan.jobs()) == list(by_objects.jobs())
        assert plan.windows_to_fetch == len(list(plan.jobs()))
    _assert_fetches_only_days_maybe_fetched(by_whole_days, checkpoint, lo, hi)
    _assert_only_days_are_planned_alone(objects, compact, lo, hi, checkpoint)


def _assert_fetches_only_days_maybe_fetched(
    plan: Plan, checkpoint: FakeCheckpoint, lo: dt.datetime | None, hi: dt.datetime | None
) -> None:
    """A run writes into no file of a day ``days_maybe_fetched`` leaves out (it looks at
    those files while it fetches, trusting them meanwhile)."""
    fetched = {(uuid, day.toordinal()) for uuid, day in by_day(plan)}
    maybe = {
        (device.uuid, int(day))
        for device, days in plan.availability.items()
        for day in days_maybe_fetched(days, checkpoint.whole_days_of, device, lo, hi)
    }
    assert fetched <= maybe


def _assert_only_days_are_planned_alone(
    objects: Mapping[Device, Sequence[DayAvailability]],
    compact: Mapping[Device, Sequence[DayAvailability]],
    lo: dt.datetime | None,
    hi: dt.datetime | None,
    checkpoint: FakeCheckpoint,
) -> None:
    """A plan of ``only`` some days (a repair) fetches exactly what the whole plan fetches of
    those days, and counts exactly those windows."""
    whole = plan_windows(objects, lo, hi, checkpoint.finished_for)
    some = {
        device.uuid: np.array([d.day.toordinal() for d in days[::2]], np.int64)
        for device, days in objects.items()
    }
    expected = [job for job in whole.jobs() if job.day.toordinal() in some[job.device.uuid]]
    for availability in (objects, compact):
        plan = plan_windows(
            availability,
            lo,
            hi,
            checkpoint.finished_for,
            finished_days=checkpoint.finished_days,
            whole_days=checkpoint.whole_days_of,
            only=some.__getitem__,
        )
        assert list(plan.jobs()) == expected
        assert plan.windows_to_fetch == len(expected)


@pytest.mark.parametrize(
    ("last", "windows"),
    [
        (at(4), 3),  # a record exactly on a slot's start opens that slot
        (at(4) - dt.timedelta(milliseconds=1), 2),
        (at(0), 1),
        (at(23, 59) + dt.timedelta(seconds=59.999), 12),
    ],
)
def test_windows_counted_from_arrays_end_at_the_last_record(
    last: dt.datetime, windows: int
) -> None:
    """Counted from the arrays, a day plans the slots up to the one holding its last record,
    to the millisecond, exactly as deciding the day does."""
    day = DayAvailability(DAY, 5, last)
    for availability in ({SPOD: [day]}, {SPOD: DeviceDays.of([day])}):
        plan = plan_windows(availability, None, None, lambda *_: [], finished_days=lambda _: ())
        assert (plan.windows_total, len(list(plan.jobs()))) == (windows, windows)


def test_late_data_in_a_day_the_device_has_moved_past_is_found_in_one_run() -> None:
    """With data on a later day, every window of the day is sealed: late data refetches it all."""
    server = FakeServer()
    checkpoint = FakeCheckpoint()
    next_day = DAY + dt.timedelta(days=1)
    server.add(SPOD, every_minute(at(0), at(6, day=next_day)))
    fetch_all(
        plan_windows(server.availability(), None, None, checkpoint.finished_for), server, checkpoint
    )
    assert checkpoint.finished_for(SPOD.uuid, DAY)[-1].sealed
    server.add(SPOD, [at(5, 0) + dt.timedelta(seconds=30)])
    plan = plan_windows(server.availability(), None, None, checkpoint.finished_for)
    assert [span for span in spans(list(plan.jobs())) if span[0].date() == DAY] == grid_slots(DAY)


@pytest.mark.parametrize(
    ("hi", "missing_slot"),
    [(None, 5), (BASE + dt.timedelta(days=1, hours=20), 5), (None, None)],
)
def test_whole_slot_days_missing_a_slot_are_fetched_when_decided_from_arrays(
    hi: dt.datetime | None, missing_slot: int | None
) -> None:
    """A whole-slot day lacking one slot (the range ends inside the day or not) gets exactly
    that slot planned, as deciding it day by day does; a day lacking none is up to date."""
    server, checkpoint = FakeServer(), FakeCheckpoint()
    server.add(SPOD, every_minute(BASE, BASE + dt.timedelta(days=3), step_s=600))
    objects = server.availability()
    compact = {device: DeviceDays.of(days) for device, days in objects.items()}
    fetch_all(plan_windows(objects, None, hi, checkpoint.finished_for), server, checkpoint)
    if missing_slot is not None:
        day = (BASE + dt.timedelta(days=1)).date()
        del checkpoint.entries[(SPOD.uuid, day)][grid_slots(day)[missing_slot]]
    _assert_same_plans(objects, compact, None, hi, checkpoint)
    plan = plan_windows(
        compact,
        None,
        hi,
        checkpoint.finished_for,
        finished_days=checkpoint.finished_days,
        whole_days=checkpoint.whole_days_of,
    )
    assert len(list(plan.jobs())) == (missing_slot is not None)


@given(
    values=st.lists(st.integers(-5, 40), max_size=30),
    pool=st.lists(st.integers(-5, 40), max_size=30),
    ordered=st.booleans(),
)
def test_days_in_order_are_made_unique_and_looked_up_as_numpy_does(
    values: list[int], pool: list[int], ordered: bool
) -> None:
    """The checkpoint's days of a device, in order or not, repeated or not, are made unique
    as ``np.unique`` makes them (without its sort when they come in order), and looking days
    up among them answers as ``np.isin`` does."""
    days = np.array(sorted(pool) if ordered else pool, np.int64)
    unique = ascending_unique(days)
    assert unique.tolist() == np.unique(days).tolist()
    looked_up = np.array(values, np.int64)
    assert among(looked_up, unique).tolist() == np.isin(looked_up, days).tolist()
