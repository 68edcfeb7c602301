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
    aggregate,
    periods,
    summary_line,
)

INSTALL_HINT: Final = "pip install 'sensit-harvester[report]'"
_LABEL_IN: Final = 2.6  # left margin for device labels, inches
_TOTALS_IN: Final = 0.9  # right margin for per-device totals
_TOP_IN: Final = 1.15
_BOTTOM_IN: Final = 1.5
_DPI: Final = 110


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
    grid = np.array(
        [[cell.state for cell in aggregate(row, columns)] for row in coverage.rows], dtype=np.int8
    )
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
    axes.imshow(
        grid,
        cmap=colours,
        vmin=-0.5,
        vmax=len(CellState) - 0.5,
        aspect="auto",
        interpolation="nearest",
    )
    label_size = 8.0 if n_rows <= 40 else 6.0
    axes.set_yticks(
        range(n_rows),
        [f"{row.device.name or row.device.uuid} · {row.device.type}" for row in coverage.rows],
        fontsize=label_size,
    )
    step = max(1, round(n_cols / 24))
    ticks = list(range(0, n_cols, step))
    axes.set_xticks(ticks, [columns[i].label for i in ticks], rotation=60, ha="right", fontsize=7)
    if n_cols <= 120:
        # Thin white gaps between cells: the eye counts days, not a smear.
        axes.set_xticks(np.arange(-0.5, n_cols, 1), minor=True)
        axes.set_yticks(np.arange(-0.5, n_rows, 1), minor=True)
        axes.grid(which="minor", color="white", linewidth=0.6 if n_cols <= 60 else 0.3)
        axes.tick_params(which="minor", length=0)
    for index, row in enumerate(coverage.rows):
        complete = sum(1 for cell in row.cells.values() if cell.state is CellState.COMPLETE)
        counted = sum(1 for cell in row.cells.values() if cell.state is not CellState.NO_DATA)
        axes.text(
            1.01,
            index,
            f"{complete}/{counted}",
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
