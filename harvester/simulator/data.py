"""What the simulated service knows: its devices, their records, and the simulated present.

Answers are computed on demand from the fleet (``fleet.py``) and clipped to the present: no
record exists after ``now`` (a record exactly at ``now`` may). Record windows are cached as
rendered two ways. A small window (fewer than ``BLOCK_ROWS`` cadence steps) is cut out of
blocks of ``BLOCK_ROWS`` steps kept in an LRU bounded by bytes, so small requests cost a slice
and a join. A big window is rendered exactly (rendering whole blocks would cost more) and its
body kept in a short LRU for retries. Available dates are counted in closed form and cached
per (device, zone, present). How records are written (order, envelope, date style) follows
the options' switches; the defaults are the vendor document's.

Decisions for behaviour the vendor leaves open:
- an unknown ``DeviceId`` gets ``200 {"data": []}`` (and ``[]`` for available dates), never
  404; a device asked for through another type's route is treated as unknown;
- a devices listing for another ``UserId`` than the signed-in user's is an empty array.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import OrderedDict
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from harvester.simulator import jsonrows as js
from harvester.simulator.fleet import SimDevice, build_fleet
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.records import (
    Piece,
    Style,
    format_time,
    one_record,
    render_pieces,
    window_rows,
)

#: Cadence steps per rendered block (a block spans ``BLOCK_ROWS * cadence_s`` seconds).
BLOCK_ROWS = 2048
#: Bodies of big windows kept for retries.
_BIG_WINDOWS_KEPT = 32


@functools.lru_cache(maxsize=64)
def _local_midnights(zone: ZoneInfo, first: dt.date, last: dt.date) -> np.ndarray[Any, Any]:
    """Epoch seconds of local midnight for every day from ``first`` to ``last`` + 1 day."""
    days = (last - first).days + 2
    return np.array(
        [
            int(dt.datetime.combine(first + dt.timedelta(days=n), dt.time(), zone).timestamp())
            for n in range(days)
        ],
        dtype=np.int64,
    )


class SimulatedData:
    """The fleet plus the movable present, answering the data routes."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.devices = build_fleet(options)
        self.by_uuid = {device.uuid: device for device in self.devices}
        self.now = options.initial_now()
        self.style = Style(options.order == "newest", options.date_style)
        self._bare = options.envelope == "bare"
        self.empty_window = js.wrap([], bare=self._bare)
        self._blocks: OrderedDict[tuple[int, int], list[Piece]] = OrderedDict()
        self._block_bytes = 0
        self._bodies: OrderedDict[tuple[int, int, int], tuple[bytes, int]] = OrderedDict()
        self._dates: OrderedDict[tuple[int, str, int], bytes] = OrderedDict()

    @property
    def cached_bytes(self) -> int:
        """Bytes of rendered record blocks held in memory."""
        return self._block_bytes

    @property
    def now_s(self) -> int:
        """The present as an epoch second (records at or before it exist)."""
        return int(self.now.timestamp() // 1)

    def set_now(self, now: dt.datetime) -> None:
        self.now = now.astimezone(dt.UTC)

    def find(self, uuid: str, device_type: str) -> SimDevice | None:
        device = self.by_uuid.get(uuid)
        return device if device is not None and device.type == device_type else None

    def last_record_time(self, device: SimDevice) -> int | None:
        last = int(device.timeline.last_before(np.array([self.now_s + 1], dtype=np.int64))[0])
        return None if last < 0 else last

    def device_listing(self, device_type: str) -> list[dict[str, Any]]:
        """Objects of ``getDevicesFromDeviceTypeAndRole`` for ``ALL`` or one type."""
        listing = []
        for device in self.devices:
            if device_type not in ("ALL", device.type):
                continue
            last = self.last_record_time(device)
            record = one_record(device, last, self.style) if last is not None else None
            battery = record.get("battery", 0) if record else 0
            listing.append(
                {
                    "_id": device.object_id,
                    "uuid": device.uuid,
                    "key": "",
                    "name": device.name,
                    "location": device.location,
                    "picture": "",
                    "status": "Active",
                    "type": device.type,
                    "isUTCTimeZone": device.is_utc_time_zone,
                    "isFirmwareUpdateRequire": device.firmware_change is None,
                    "isCharging": bool(record and record.get("chrg_current", 0)),
                    "lastReceivedRecord": record,
                    "battery": battery if isinstance(battery, int | float) else 0,
                }
            )
        return listing

    def available_dates(self, device: SimDevice, zone: ZoneInfo) -> bytes:
        """The JSON array of days (in ``zone``) that have records, ascending."""
        now_s = self.now_s
        key = (device.index, zone.key, now_s)
        cached = self._dates.get(key)
        if cached is not None:
            self._dates.move_to_end(key)
            return cached
        body = self._compute_dates(device, zone, now_s)
        self._dates[key] = body
        if len(self._dates) > 4096:
            self._dates.popitem(last=False)
        return body

    def _compute_dates(self, device: SimDevice, zone: ZoneInfo, now_s: int) -> bytes:
        timeline = device.timeline
        first = timeline.first
        limit = now_s + 1
        last = int(timeline.last_before(np.array([limit], dtype=np.int64))[0])
        if first is None or last < 0:
            return b"[]"
        first_day = dt.datetime.fromtimestamp(first, zone).date()
        last_day = dt.datetime.fromtimestamp(last, zone).date()
        bounds = _local_midnights(zone, first_day, last_day)
        lows = np.minimum(bounds[:-1], limit)
        highs = np.minimum(bounds[1:], limit)
        counts = timeline.count_before(highs) - timeline.count_before(lows)
        lasts = timeline.last_before(highs)
        entries = []
        for offset in np.flatnonzero(counts > 0).tolist():
            day = first_day + dt.timedelta(days=offset)
            entries.append(
                {
                    "_id": {"month": day.month, "day": day.day, "year": day.year},
                    "count": int(counts[offset]),
                    "date": format_time(int(lasts[offset]), self.style.date_style),
                }
            )
        return orjson.dumps(entries)

    def window(self, device: SimDevice, start_s: int, end_s: int) -> tuple[bytes, int]:
        """Body and record count for records with ``start_s <= t <= end_s`` (and t <= now)."""
        high = min(end_s, self.now_s)
        if high < start_s:
            return self.empty_window, 0
        span = BLOCK_ROWS * self.options.cadence_s
        if high - start_s >= span:
            return self._big_window(device, start_s, high)
        parts: list[bytes] = []
        records = 0
        blocks = range(start_s // span, high // span + 1)
        for block in reversed(blocks) if self.style.newest_first else blocks:
            pieces = self._block(device, block)
            for piece in reversed(pieces) if self.style.newest_first else pieces:
                rows, count = piece.slice(start_s, high)
                if count:
                    parts.append(rows)
                    records += count
        return js.wrap(parts, bare=self._bare), records

    def _big_window(self, device: SimDevice, start_s: int, high: int) -> tuple[bytes, int]:
        key = (device.index, start_s, high)
        cached = self._bodies.get(key)
        if cached is not None:
            self._bodies.move_to_end(key)
            return cached
        times = device.timeline.times_between(start_s, high)
        body = js.wrap(window_rows(device, times, self.style), bare=self._bare)
        answer = (body, len(times))
        if self.options.cache_mb:
            self._bodies[key] = answer
            if len(self._bodies) > _BIG_WINDOWS_KEPT:
                self._bodies.popitem(last=False)
        return answer

    def _block(self, device: SimDevice, block: int) -> list[Piece]:
        key = (device.index, block)
        cached = self._blocks.get(key)
        if cached is not None:
            self._blocks.move_to_end(key)
            return cached
        span = BLOCK_ROWS * self.options.cadence_s
        times = device.timeline.times_between(block * span, (block + 1) * span - 1)
        pieces = render_pieces(device, times, self.style)
        self._blocks[key] = pieces
        self._block_bytes += sum(len(piece.rows) for piece in pieces)
        budget = self.options.cache_mb * 1_000_000
        while self._block_bytes > budget and len(self._blocks) > 1:
            _, evicted = self._blocks.popitem(last=False)
            self._block_bytes -= sum(len(piece.rows) for piece in evicted)
        return pieces
