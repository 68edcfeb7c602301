"""The coverage heat map as a PNG, drawn with matplotlib (the optional ``report`` extra).

Cells are sized so that 5 devices x 30 days and 200 devices x 3 years (drawn per week) both
keep their labels readable: the figure grows with the number of rows and columns instead of
shrinking the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from harvester.errors import ConfigError, StorageError
from harvester.inspect.report import (
    LEGEND_ORDER,
    STATE_COLOURS,
    CellState,
    Coverage,
    summary_line,
)
from harvester.inspect.report_periods import aggregate, periods

INSTALL_HINT: Final = "pip install 'sensit-harvester[report]'"
_LABEL_IN: Final = 2.6  # left margin for device labels, inches
_TOTALS_IN: Final = 0.9  # right margin for per-device totals
_TOP_IN: Final = 1.15
_BOTTOM_IN: Final = 1.5
_DPI: Final = 110
_ROWS_PER_IMAGE: Final = 48


def write_png(coverage: Coverage, path: Path) -> None:
    """Draws ``coverage`` into ``path``; ConfigError with the install line without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise ConfigError(
            f"the PNG report needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None
    if coverage.first is None or coverage.last is None:
        raise ConfigError("the archive has no device-day to report yet: run 'harvester run'")
    unit, columns = periods(coverage.first, coverage.last)
    aggregated = aggregate(coverage, columns)
    grid = aggregated.state
    n_rows, n_cols = grid.shape
    cell_w = min(0.32, max(0.075, 15.0 / n_cols))
    cell_h = min(0.32, max(0.13, 10.0 / n_rows))
    width = _LABEL_IN + _TOTALS_IN + max(4.5, cell_w * n_cols)
    height = _TOP_IN + _BOTTOM_IN + cell_h * n_rows
    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes(
        (
            _LABEL_IN / width,
            _BOTTOM_IN / height,
            (width - _LABEL_IN - _TOTALS_IN) / width,
            (height - _TOP_IN - _BOTTOM_IN) / height,
        )
    )
    colours = ListedColormap([STATE_COLOURS[state] for state in CellState])
    # One image per band of rows: matplotlib resamples an image to the pixels it covers in
    # float RGBA (~32 bytes a pixel), 650 MB for 1,000 devices in one piece; a band is at
    # most ~1,100 px tall. The pixels are one image's, but for a rare one on a band's edge
    # whose nearest row is a rounding tie (3 of 13 million for 1,000 devices).
    for top in range(0, n_rows, _ROWS_PER_IMAGE):
        bottom = min(top + _ROWS_PER_IMAGE, n_rows)
        axes.imshow(
            grid[top:bottom],
            cmap=colours,
            vmin=-0.5,
            vmax=len(CellState) - 0.5,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, n_cols - 0.5, bottom - 0.5, top - 0.5),
        )
    axes.set_xlim(-0.5, n_cols - 0.5)
    axes.set_ylim(n_rows - 0.5, -0.5)
    label_size = 8.0 if n_rows <= 40 else 6.0
    axes.set_yticks(
        range(n_rows),
        [f"{device.name or device.uuid} · {device.type}" for device in coverage.devices],
        fontsize=label_size,
    )
    step = max(1, round(n_cols / 24))
    ticks = list(range(0, n_cols, step))
    axes.set_xticks(ticks, [columns[i].label for i in ticks], rotation=60, ha="right", fontsize=7)
    if n_cols <= 120:
        # Thin white gaps between cells: the eye counts days, not a smear.
        gap = 0.6 if n_cols <= 60 else 0.3
        axes.vlines(np.arange(-0.5, n_cols, 1), -0.5, n_rows - 0.5, colors="white", linewidth=gap)
        axes.hlines(np.arange(-0.5, n_rows, 1), -0.5, n_cols - 0.5, colors="white", linewidth=gap)
    complete = aggregated.days_of(CellState.COMPLETE).tolist()
    counted = aggregated.days_with_data().tolist()
    for index in range(n_rows):
        axes.text(
            1.01,
            index,
            f"{complete[index]}/{counted[index]}",
            va="center",
            ha="left",
            fontsize=label_size,
            transform=axes.get_yaxis_transform(),  # x in axes fractions, y in rows
        )
    span = f"{coverage.first} .. {coverage.last} (UTC days, one column per {unit})"
    figure.suptitle(f"Archive coverage · {span}", fontsize=11, y=1 - 0.3 / height)
    figure.text(
        0.5,
        1 - 0.78 / height,
        f"{summary_line(coverage)}\nserver counts from {coverage.counts_from} · "
        "right of each row: complete / device-days with data",
        ha="center",
        va="center",
        fontsize=8,
    )
    totals = coverage.state_totals()
    handles = [
        Patch(
            facecolor=STATE_COLOURS[state],
            edgecolor="#666666",
            label=f"{state.label}: {totals[state]:,}",
        )
        for state in LEGEND_ORDER
    ]
    figure.legend(
        handles=handles,
        loc="lower center",
        ncols=len(handles),
        fontsize=8,
        frameon=False,
        title=f"device-days ({unit} columns show their worst day)",
        title_fontsize=8,
    )
    try:
        figure.savefig(path, dpi=_DPI)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
