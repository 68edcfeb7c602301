"""Record values: realistic, varying, and a pure function of ``(seed, device, time)``.

Columns are computed with numpy for a whole window at once from counter-based noise
(``hashing.unit_array``), so any record comes out identical whichever window, process or
order produced it. Field sets:

- SPOD: exactly the fields of ``sensit-api.md`` section 5.
- FMD (methane detector): ``methane_ppm``, ``methane_raw_mv``, ``temp``, ``rh``,
  ``pressure_mbar``, ``battery``, ``signal_rssi``, ``alarm``.
- RAMP (multi-pollutant): ``co``, ``no``, ``no2``, ``so2``, ``o3`` (ppb), ``co2`` (ppm),
  ``pm25`` (µg/m³), ``temp``, ``rh``, ``battery``.

After a device's firmware update its records change shape, as real fleets do: SPOD's
``ws_direction`` is sometimes null and ``tc_heatOutput`` turns fractional; FMD gains
``methane_ppm_avg``, ``battery`` turns fractional and ``signal_rssi`` is sometimes null;
RAMP gains ``pm10``, ``co2`` turns fractional and ``so2`` is sometimes null.

Values are rendered straight into JSON text column by column (``jsonrows``), so a 7,200-record
window costs a few milliseconds and no Python object per record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from harvester.simulator import jsonrows as js
from harvester.simulator.fleet import DAY, SimDevice
from harvester.simulator.hashing import FloatArray, mix64, unit_array
from harvester.simulator.timeline import IntArray

Columns = dict[str, js.Cell]


class _Streams:
    """Noise sources of one device over the times of one window."""

    def __init__(self, device: SimDevice, times: IntArray) -> None:
        self.key = device.key
        self.t = times

    def noise(self, salt: int) -> FloatArray:
        """Independent uniform [0, 1) per record."""
        return unit_array(mix64(self.key, salt), self.t)

    def smooth(self, salt: int, period_s: int) -> FloatArray:
        """Slowly wandering [0, 1): knots every ``period_s`` seconds, smoothstep between."""
        knot = self.t // period_s
        frac = (self.t % period_s) / period_s
        frac = frac * frac * (3.0 - 2.0 * frac)
        both = unit_array(mix64(self.key, salt, period_s), np.concatenate((knot, knot + 1)))
        return both[: len(knot)] * (1.0 - frac) + both[len(knot) :] * frac

    def daily(self, peak_hour: float) -> FloatArray:
        """A diurnal cycle in [-1, 1] that peaks at ``peak_hour`` UTC."""
        return np.cos(2.0 * np.pi * ((self.t % DAY) / DAY - peak_hour / 24.0))

    def constant(self, value: float) -> FloatArray:
        return np.full(len(self.t), value)


def _weather(s: _Streams) -> tuple[FloatArray, FloatArray, FloatArray]:
    temp = 12.0 + 7.0 * s.daily(15) + 10.0 * (s.smooth(1, 4 * DAY) - 0.5) + 0.3 * s.noise(2)
    rh = np.clip(
        62.0 - 1.6 * (temp - 12.0) + 20.0 * (s.smooth(3, DAY) - 0.5) + s.noise(4), 4.0, 100.0
    )
    pressure = 1013.0 + 16.0 * (s.smooth(5, 2 * DAY) - 0.5) + 0.2 * s.noise(6)
    return temp, rh, pressure


def _spod(s: _Streams, updated: bool) -> Columns:
    temp, rh, pressure = _weather(s)
    plume = np.clip(s.smooth(10, 1200) - 0.85, 0.0, None) / 0.15
    ppb = 4.0 + 3.0 * s.noise(11) + 400.0 * plume**2 * s.noise(12)
    direction = np.floor((360.0 * s.smooth(13, 3 * 3600) + 25.0 * s.noise(14)) % 360.0)
    heat = np.clip(35.0 + 2.5 * (18.0 - temp) + 4.0 * s.noise(15), 0.0, 100.0)
    sun = np.clip(s.daily(13), 0.0, None)
    return {
        "pid1_PPB_Calc": js.Number(ppb, 3),
        "pid1_mvRaw": js.Number(52.0 + 1.7 * ppb + 3.0 * s.noise(16)),
        "temp": js.Number(temp, 2),
        "rh_Humd": js.Number(rh, 2),
        "pressure_mbar": js.Number(pressure, 2),
        "ws_speed": js.Number(
            np.clip(6 * s.smooth(17, 3600) + 1.5 * s.noise(18) - 0.5, 0, None), 2
        ),
        "ws_direction": js.Number(direction, 0, s.noise(19) < 0.1 if updated else None),
        "tc_temp": js.Number(30.0 + 0.6 * (s.noise(20) - 0.5), 2),
        "tc_heatOutput": js.Number(heat, 1 if updated else 0),
        "tc_setPoint": js.Number(s.constant(30)),
        "batt_voltage": js.Number(12.3 + 0.7 * sun + 0.05 * s.noise(21), 3),
        "chrg_current": js.Number(1.4 * sun * s.smooth(22, 1800), 3),
        "run_current": js.Number(0.24 + 0.03 * s.noise(23), 3),
        "lat": js.Number(s.constant(40.5953 + (s.key % 1000) * 1e-5), 6),
        "long": js.Number(s.constant(-105.1403 - (s.key // 1000 % 1000) * 1e-5), 6),
    }


def _fmd(s: _Streams, updated: bool) -> Columns:
    temp, rh, pressure = _weather(s)
    leak = np.clip(s.smooth(30, 900) - 0.9, 0.0, None) / 0.1
    background = 1.92 + 0.08 * s.smooth(31, 6 * 3600)
    methane = background + 0.01 * s.noise(32) + 60.0 * leak**2
    battery = 55.0 + 40.0 * s.smooth(33, 12 * 3600)
    rssi = -92.0 + 25.0 * s.smooth(34, 3600) + 2.0 * s.noise(35)
    columns: Columns = {
        "methane_ppm": js.Number(methane, 3),
        "methane_raw_mv": js.Number(410.0 + 12.5 * methane + 4.0 * s.noise(36)),
        "temp": js.Number(temp, 2),
        "rh": js.Number(rh, 2),
        "pressure_mbar": js.Number(pressure, 2),
        "battery": js.Number(battery, 1 if updated else 0),
        "signal_rssi": js.Number(rssi, 0, s.noise(37) < 0.08 if updated else None),
        "alarm": js.Boolean(methane > 10.0),
    }
    if updated:
        columns["methane_ppm_avg"] = js.Number(background + 30.0 * leak, 3)
    return columns


def _ramp(s: _Streams, updated: bool) -> Columns:
    temp, rh, _ = _weather(s)
    traffic = np.clip(s.daily(8), 0.0, None) + 0.8 * np.clip(s.daily(18), 0.0, None)
    co2 = 415.0 + 35.0 * s.smooth(40, 4 * 3600) + 15.0 * traffic + 2.0 * s.noise(41)
    pm25 = 4.0 + 18.0 * s.smooth(42, 6 * 3600) + 6.0 * traffic + 1.5 * s.noise(43)
    so2 = 0.5 + 2.0 * s.smooth(44, 8 * 3600) + 0.3 * s.noise(45)
    columns: Columns = {
        "co": js.Number(180 + 220 * traffic + 60 * s.smooth(46, 3600) + 10 * s.noise(47), 1),
        "no": js.Number(2.0 + 25.0 * traffic * s.smooth(48, 1800) + s.noise(49), 2),
        "no2": js.Number(6.0 + 18.0 * traffic + 5.0 * s.smooth(50, 3600) + s.noise(51), 2),
        "so2": js.Number(so2, 2, s.noise(52) < 0.12 if updated else None),
        "o3": js.Number(np.clip(25.0 + 22.0 * s.daily(15) + 6 * s.noise(53), 0, None), 2),
        "co2": js.Number(co2, 2 if updated else 0),
        "pm25": js.Number(pm25, 2),
        "temp": js.Number(temp, 2),
        "rh": js.Number(rh, 2),
        "battery": js.Number(70.0 + 28.0 * s.smooth(54, 10 * 3600)),
    }
    if updated:
        columns["pm10"] = js.Number(pm25 * 1.6 + 3.0 * s.noise(55), 2)
    return columns


_BY_TYPE: dict[str, Callable[[_Streams, bool], Columns]] = {
    "SPOD": _spod,
    "FMD": _fmd,
    "RAMP": _ramp,
}


@dataclass(frozen=True, slots=True)
class Style:
    """How records are written: newest or oldest first, and the style of their dates
    (``options.ORDERS`` and ``options.DATE_STYLES``)."""

    newest_first: bool = True
    date_style: str = "iso-ms"


@dataclass(frozen=True, slots=True)
class Piece:
    """Rendered records of one device: ``rows`` holds one fixed-width row per time in
    ``times`` (ascending), each ``width`` bytes long and ending with ``,``, newest first or
    oldest first as ``newest_first`` says."""

    times: IntArray
    rows: bytes
    width: int
    newest_first: bool = True

    def slice(self, low: int, high: int) -> tuple[bytes, int]:
        """The rows of records with ``low <= t <= high`` (in the piece's order) and their
        number."""
        first = int(np.searchsorted(self.times, low, side="left"))
        stop = int(np.searchsorted(self.times, high, side="right"))
        if stop <= first:
            return b"", 0
        if self.newest_first:
            total = len(self.times)
            first, stop = total - stop, total - first
        return self.rows[first * self.width : stop * self.width], stop - first


def _piece(device: SimDevice, times: IntArray, updated: bool, style: Style) -> Piece:
    ordered = times[::-1] if style.newest_first else times
    counters = (unit_array(device.key, ordered) * 0x1000000).astype(np.int64)
    fields: list[tuple[str, js.Cell]] = [
        ("_id", js.ObjectId(ordered, device.id_stem, counters)),
        ("id", js.Text(f'"{device.uuid}"')),
        ("date", js.IsoTime(ordered, style.date_style)),
    ]
    fields += _BY_TYPE[device.type](_Streams(device, ordered), updated).items()
    rows, width = js.render_rows(len(times), fields)
    return Piece(times, rows, width, style.newest_first)


def render_pieces(device: SimDevice, times: IntArray, style: Style = Style()) -> list[Piece]:
    """The device's records at ``times`` (ascending), oldest piece first.

    Two pieces when the firmware update falls inside: the shapes differ, so do the widths.
    """
    if not len(times):
        return []
    change = device.firmware_change
    split = 0 if change is None else int(np.searchsorted(times, change, side="left"))
    if change is None or split == 0 or split == len(times):
        return [_piece(device, times, change is not None and split == 0, style)]
    return [
        _piece(device, times[:split], False, style),
        _piece(device, times[split:], True, style),
    ]


def window_rows(device: SimDevice, times: IntArray, style: Style = Style()) -> list[bytes]:
    """The rendered rows of the device's records at ``times`` (ascending), in ``style``'s
    order, for ``jsonrows.wrap``."""
    pieces = render_pieces(device, times, style)
    return [piece.rows for piece in (reversed(pieces) if style.newest_first else pieces)]


def window_body(device: SimDevice, times: IntArray, style: Style = Style()) -> bytes:
    """``{"data": [...]}`` for the device's records at ``times`` (ascending)."""
    return js.wrap(window_rows(device, times, style))


def one_record(device: SimDevice, at: int, style: Style = Style()) -> dict[str, Any]:
    """The device's record at epoch second ``at`` as a JSON object."""
    parsed: dict[str, Any] = orjson.loads(
        window_body(device, np.array([at], dtype=np.int64), style)
    )
    record: dict[str, Any] = parsed["data"][0]
    return record


def format_time(epoch_s: int, date_style: str = "iso-ms") -> str:
    """An epoch second as the API writes dates, ``2024-02-05T22:00:00.000Z`` by default."""
    return time.strftime(js.DATE_FORMATS[date_style], time.gmtime(epoch_s))
