"""The simulated fleet: which devices exist, when each one reported, when its firmware changed.

Everything here is a pure function of the options (mostly ``seed``), so every process that
gets the same options builds the same fleet. Per device:

- a data range inside ``[start, start + days)``: the first device of each type starts at the
  range's first midnight, the others start later, at an odd hour; about a third of the later
  devices stop for good at some hour near the end of the range. A device that is still
  reporting at the end of the range keeps reporting after it, so moving the simulated clock
  forward always brings new data;
- outage days (no record at all) and partial days (an outage of a few hours);
- a firmware update at a day inside its range for the first device of each type and about
  half of the others: from then on its records change shape (see ``records.py``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from harvester.models import DEVICE_TYPES, DeviceType
from harvester.simulator.hashing import mix64, unit
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.timeline import Timeline

DAY: Final = 86_400
#: End of activity for a device that never stops (year 2255): "open-ended" without overflow.
OPEN_END: Final = 9_000_000_000

_LOCATIONS: Final = ("Valparaiso", "Fort Collins", "Midland", "Pittsburgh", "Bakersfield")

# Salts that keep each per-device decision independent of the others.
_START, _STOP, _OUTAGE, _FIRMWARE, _IDS, _FLAGS = range(1, 7)


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One simulated sensor."""

    index: int
    uuid: str
    type: DeviceType
    object_id: str
    name: str
    location: str
    is_utc_time_zone: bool
    #: Ten hex digits unique to the device, the middle of every record ``_id``.
    id_stem: str
    #: Key for the device's own value streams (``hashing.unit_array``).
    key: int
    timeline: Timeline
    #: Epoch second from which the records have their post-update shape (None: never).
    firmware_change: int | None


def epoch(day: dt.date) -> int:
    """Epoch second of midnight UTC at the start of ``day``."""
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


def build_fleet(options: SimulatorOptions) -> list[SimDevice]:
    """The devices of a run, ``uuid`` "1001", "1002", ... spread round-robin over the types."""
    return [_build_device(options, index) for index in range(options.devices)]


def _build_device(options: SimulatorOptions, index: int) -> SimDevice:
    seed, days = options.seed, options.days
    day0 = epoch(options.start)
    leader = index < len(DEVICE_TYPES)

    first_day = 0 if leader else mix64(seed, index, _START) % max(1, days // 4)
    begin = day0 + first_day * DAY
    if not leader:
        begin += (mix64(seed, index, _START, 1) % 24) * 3600 + (mix64(seed, index, 2) % 60) * 60

    end = OPEN_END
    last_day = days - 1
    if not leader and days >= 3 and unit(seed, index, _STOP) < 0.34:
        earliest = max(first_day + 1, (days * 3) // 4)
        last_day = earliest + mix64(seed, index, _STOP, 1) % max(1, days - 1 - earliest)
        end = day0 + last_day * DAY + (1 + mix64(seed, index, _STOP, 2) % 22) * 3600

    outages: list[tuple[int, int]] = []
    for day in range(first_day + 1, last_day):
        draw = unit(seed, index, _OUTAGE, day)
        midnight = day0 + day * DAY
        if draw < 0.07:
            outages.append((midnight, midnight + DAY))
        elif draw < 0.2:
            gap_start = midnight + (mix64(seed, index, _OUTAGE, day, 1) % (20 * 60)) * 60
            gap_hours = 1 + mix64(seed, index, _OUTAGE, day, 2) % 6
            outages.append((gap_start, min(midnight + DAY, gap_start + gap_hours * 3600)))

    intervals: list[tuple[int, int]] = []
    cursor = begin
    for gap_start, gap_end in outages:
        if gap_start > cursor:
            intervals.append((cursor, gap_start))
        cursor = max(cursor, gap_end)
    if end > cursor:
        intervals.append((cursor, end))

    firmware_change: int | None = None
    if leader or unit(seed, index, _FIRMWARE) < 0.5:
        span_end = min(end, day0 + days * DAY)
        middle = begin + (span_end - begin) // 2
        at_midnight = middle - middle % DAY
        firmware_change = at_midnight if at_midnight > begin else middle - middle % 3600

    ids = mix64(seed, index, _IDS)
    flags = mix64(seed, index, _FLAGS)
    uuid = str(1001 + index)
    return SimDevice(
        index=index,
        uuid=uuid,
        type=DEVICE_TYPES[index % len(DEVICE_TYPES)],
        # ObjectId-like: 4 bytes of "creation time" (the range start), then 8 random bytes.
        object_id=f"{day0 & 0xFFFFFFFF:08x}{ids:016x}",
        name=f"METEC {uuid}",
        location=_LOCATIONS[flags % len(_LOCATIONS)],
        is_utc_time_zone=bool(flags >> 8 & 1),
        id_stem=f"{(ids >> 40) & 0xFFFFFF:06x}{index & 0xFFFF:04x}",
        key=mix64(seed, index, _IDS, 1),
        timeline=Timeline(intervals, options.cadence_s),
        firmware_change=firmware_change,
    )
