"""PURE  What ``harvester probe`` asks next, from what came back: the device, the day, the record
two windows meet on, the pair of windows a 4-hour call spans, the variants of a window's
request and the devices sampled for the estimate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from itertools import zip_longest
from typing import Final

from harvester.errors import ConfigError
from harvester.models import DEVICE_TYPES
from harvester.plan.windows import format_api_time
from harvester.probe.findings import DayEntry, ListedDevice, Record, Window

HOUR: Final = dt.timedelta(hours=1)
#: The earliest hour of a day's last window (22:00-24:00).
_LAST_WINDOW_HOUR: Final = 22
#: Windows whose start hour is written with one digit when unpadded (00:00 … 08:00).
_ONE_DIGIT_HOUR_WINDOWS: Final = 5


def select_devices(
    listed: Sequence[ListedDevice], device_type: str, uuids: Sequence[str]
) -> list[ListedDevice]:
    """The listed devices that ``--device-type`` and ``--devices`` select, in list order."""
    kinds = DEVICE_TYPES if device_type == "ALL" else (device_type,)
    return [d for d in listed if d.type in kinds and (not uuids or d.uuid in uuids)]


def choose_device(
    selected: Sequence[ListedDevice], wanted: str | None
) -> tuple[ListedDevice | None, str]:
    """``--device`` when given (a ``ConfigError`` when it is not listed), else the device
    whose last record is the newest (the first listed of equals); and why."""
    if wanted is not None:
        for device in selected:
            if device.uuid == wanted:
                return device, "--device"
        shown = ", ".join(d.uuid for d in selected[:10]) or "none"
        raise ConfigError(
            f"--device {wanted}: not among the {len(selected)} devices the account lists for "
            f"this selection (--device-type, --devices): {shown}"
        )
    if not selected:
        return None, "the account lists no device of the selection that the harvester can ask for"
    dated = [device for device in selected if device.last_record is not None]
    if not dated:
        return selected[0], "the first listed (no lastReceivedRecord has a date)"
    newest = max(dated, key=lambda device: device.last_record or dt.datetime.min)
    when = newest.last_record or dt.datetime.min
    return newest, f"the newest lastReceivedRecord, {when:%Y-%m-%d %H:%M:%S} UTC"


def choose_day(days: Sequence[DayEntry]) -> tuple[DayEntry | None, bool, str]:
    """The UTC day whose twelve windows the probe asks for, whether it is the device's last
    day (maybe still in progress), and why it was chosen.

    The smallest finished day with records, to keep the windows light, among those whose last
    record lies in their last window if any does, so that a request ending at ``24:00:00``
    has records to compare.
    """
    ordered = sorted(days, key=lambda entry: entry.day)
    if not ordered:
        return None, False, "the device has no day with data"
    finished = ordered[:-1] or ordered
    counted = [entry for entry in finished if entry.count > 0]
    if not counted:
        return None, False, "no day of the device counts a record"
    late = [
        entry
        for entry in counted
        if entry.last_at is not None
        and entry.last_at.date() == entry.day
        and entry.last_at.hour >= _LAST_WINDOW_HOUR
    ]
    chosen = min(late or counted, key=lambda entry: entry.count)
    is_last = chosen.day == ordered[-1].day
    if is_last:
        why = "its only day, maybe still in progress"
    elif late:
        why = "the smallest finished day with records in its last window"
    else:
        why = "the smallest finished day"
    return chosen, is_last, f"{why} ({chosen.count} records)"


def window_payload(
    device: ListedDevice, start: str, end: str, id_key: str = "DeviceId"
) -> dict[str, str]:
    """A records call's body, as the client sends it unless ``id_key`` says otherwise."""
    return {id_key: device.uuid, "DeviceType": device.type, "StartDate": start, "EndDate": end}


def choose_edge_record(windows: Sequence[Window]) -> tuple[Record | None, str]:
    """A record on a whole second seen strictly inside one of the day's windows (so it exists
    whatever the bounds are), the nearest to 11:00; or None and why there is none.

    The server's times have whole seconds: only such a record can be put exactly on an edge.
    """
    candidates = [
        record
        for window in windows
        for record in window.answer.records
        if record.at is not None
        and record.at.microsecond == 0
        and window.start < record.at < window.end
    ]
    if not candidates:
        if not any(window.answer.records for window in windows):
            return None, "the day's windows returned no records"
        return None, "no record lies on a whole second inside a window (times carry fractions)"
    middle = windows[0].start + 11 * HOUR
    chosen = min(candidates, key=lambda r: (abs((r.at or middle) - middle), r.at, r.id))
    return chosen, ""


def edge_windows(at: dt.datetime) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """The window ending on ``at`` and the one starting on it, an hour each."""
    return (at - HOUR, at), (at, at + HOUR)


def choose_over_cap(windows: Sequence[Window]) -> tuple[int | None, str]:
    """The first of two neighbouring windows that both returned records (a 4-hour call over
    both shows which part a cut keeps), or None and why."""
    for first in range(len(windows) - 1):
        if windows[first].answer.records and windows[first + 1].answer.records:
            return first, ""
    return None, "no two neighbouring windows of the day returned records"


def _unpadded(moment: dt.datetime) -> str:
    return f"{moment.year}-{moment.month}-{moment.day} {moment.hour}:{moment:%M:%S}"


def variant_requests(
    device: ListedDevice, windows: Sequence[Window]
) -> list[tuple[str, int, str, dict[str, str]]]:
    """The day's windows asked again as the vendor's examples spell them: ending at
    ``24:00:00``, with unpadded dates, naming the device ``DeviceID``. Each is (name, index of
    the window it repeats, what differs, body)."""
    if len(windows) < 2:
        return []
    last = len(windows) - 1
    final = windows[last]
    start = format_api_time(final.start)
    end_24 = f"{final.start:%Y-%m-%d} 24:00:00"
    early = range(min(_ONE_DIGIT_HOUR_WINDOWS, len(windows)))
    unpadded = next((k for k in early if windows[k].answer.records), min(1, last))
    low, high = _unpadded(windows[unpadded].start), _unpadded(windows[unpadded].end)
    named = next((k for k, w in enumerate(windows) if w.answer.records), 0)
    return [
        ("24:00:00", last, f'EndDate "{end_24}"', window_payload(device, start, end_24)),
        (
            "unpadded",
            unpadded,
            f'StartDate "{low}", EndDate "{high}"',
            window_payload(device, low, high),
        ),
        (
            "DeviceID",
            named,
            '"DeviceID" for "DeviceId"',
            window_payload(
                device,
                format_api_time(windows[named].start),
                format_api_time(windows[named].end),
                id_key="DeviceID",
            ),
        ),
    ]


def sample_devices(
    selected: Sequence[ListedDevice], chosen: ListedDevice, count: int
) -> list[ListedDevice]:
    """Up to ``count`` other devices whose days the estimate reads, taken from each type in
    turn (list order within a type), so that every type weighs in."""
    by_type = [[d for d in selected if d.type == kind and d != chosen] for kind in DEVICE_TYPES]
    turns = (device for row in zip_longest(*by_type) for device in row if device is not None)
    return [device for _, device in zip(range(count), turns, strict=False)]
