"""The coverage PNG: drawn in bands of rows that meet without a seam, whatever the fleet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harvester.inspect import report_png
from harvester.inspect.png_stream import PngStream
from harvester.inspect.report import STATE_COLOURS, CellState, Coverage, DayCells
from harvester.inspect.report_png import ROWS_PER_BAND, PictureLayout, write_png
from harvester.models import Device

FIRST = dt.date(2024, 1, 1)


def _random_coverage(devices: int, days: int, seed: int) -> Coverage:
    """Every device-day known, each in a random state (days <= 92: one column a day)."""
    fleet = [
        Device(f"{1001 + i}", ("FMD", "SPOD", "RAMP")[i % 3], f"dev {i}") for i in range(devices)
    ]
    device, offset = np.divmod(np.arange(devices * days), days)
    states = np.random.default_rng(seed).integers(0, len(CellState), devices * days)
    cells = DayCells(
        device.astype(np.int32),
        (FIRST.toordinal() + offset).astype(np.int32),
        np.full(devices * days, 5, np.int64),
        np.full(devices * days, 5, np.int64),
        states.astype(np.int8),
    )
    return Coverage(fleet, cells, FIRST, FIRST + dt.timedelta(days=days - 1), "the test")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.parametrize(("devices", "days"), [(3, 5), (ROWS_PER_BAND * 2 + 5, 40)])
def test_every_cell_shows_its_state_colour_across_bands(
    tmp_path: Path, devices: int, days: int
) -> None:
    """Decoded, the picture has the layout's size and the centre of every cell, in every
    band, is the colour of that device-day's state."""
    coverage = _random_coverage(devices, days, seed=devices)
    path = tmp_path / "coverage.png"
    write_png(coverage, path)
    layout = PictureLayout.of(devices, days)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (layout.height, layout.width, 3)
    palette = np.array([_rgb(STATE_COLOURS[state]) for state in CellState], np.uint8)
    rows = report_png._TOP_PX + (np.arange(devices) + 0.5) * layout.cell_height
    columns = report_png._LABEL_PX + (np.arange(days) + 0.5) * layout.plot_width / days
    centres = pixels[np.ix_(rows.astype(int), columns.astype(int))]
    states = coverage.cells.state.reshape(devices, days)
    assert np.array_equal(centres, palette[states])


def test_no_band_is_taller_than_its_rows_however_many_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The picture is rendered a band of rows at a time: for 200 devices no piece handed to
    the PNG is taller than one band's rows and the margins, so memory does not grow with the
    fleet."""
    written: list[int] = []
    write_rows = PngStream.write_rows

    def recording(self: PngStream, rgb: np.ndarray) -> None:
        written.append(rgb.shape[0])
        write_rows(self, rgb)

    monkeypatch.setattr(PngStream, "write_rows", recording)
    write_png(_random_coverage(200, 10, seed=1), tmp_path / "coverage.png")
    layout = PictureLayout.of(200, 10)
    tallest = report_png._TOP_PX + ROWS_PER_BAND * layout.cell_height + report_png._BOTTOM_PX
    assert len(written) == -(-200 // ROWS_PER_BAND)
    assert max(written) <= tallest
    assert sum(written) == layout.height
