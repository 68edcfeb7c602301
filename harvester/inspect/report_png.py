"""The coverage heat map as a PNG, drawn with matplotlib (the optional ``report`` extra).

Cells are sized so that 5 devices x 30 days and 200 devices x 3 years (drawn per week) both
keep their labels readable: the picture grows with the number of rows and columns instead of
shrinking the text. It is drawn a band of rows at a time, each band a small figure of the
picture's width, and the bands are streamed into one PNG (``png_stream``): memory stays that
of one band however many devices there are (1,000 devices drawn as one figure took ~210 MB:
a 14,591 x 2,035 px canvas, and matplotlib's resampling of the image in float RGBA).
Geometry is in whole pixels, so that the bands meet without a seam.
"""

from __future__ import annotations

import gc
import importlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from harvester.errors import ConfigError, StorageError
from harvester.inspect.png_stream import PngStream
from harvester.inspect.report import (
    LEGEND_ORDER,
    STATE_COLOURS,
    CellState,
    Coverage,
    summary_line,
)
from harvester.inspect.report_periods import Period, PeriodGrid, aggregate, periods

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT: Final = "pip install 'sensit-harvester[report]'"
_DPI: Final = 110
_LABEL_PX: Final = 286  # left margin for device labels (2.6 in)
_TOTALS_PX: Final = 99  # right margin for per-device totals (0.9 in)
_TOP_PX: Final = 127  # title and summary (1.15 in)
_BOTTOM_PX: Final = 165  # column labels and legend (1.5 in)
#: Rows drawn per band: matplotlib resamples a band's image in float RGBA (~32 bytes a pixel
#: it covers), ~15 MB for 24 rows of a 2,000 px wide picture.
ROWS_PER_BAND: Final = 24
_MATPLOTLIB_MODULES: Final = (
    "matplotlib.backends.backend_agg",
    "matplotlib.colors",
    "matplotlib.figure",
    "matplotlib.patches",
)


@dataclass(frozen=True, slots=True)
class PictureLayout:
    """The picture's geometry in whole pixels: rows (at least one) of ``cell_height`` px,
    columns sharing ``plot_width`` px, margins around them."""

    rows: int
    columns: int
    cell_height: int
    plot_width: int

    @classmethod
    def of(cls, rows: int, columns: int) -> PictureLayout:
        cell_width_in = min(0.32, max(0.075, 15.0 / columns))
        cell_height_in = min(0.32, max(0.13, 10.0 / rows))
        plot_width = round(max(4.5, cell_width_in * columns) * _DPI)
        return cls(rows, columns, round(cell_height_in * _DPI), plot_width)

    @property
    def width(self) -> int:
        return _LABEL_PX + self.plot_width + _TOTALS_PX

    @property
    def height(self) -> int:
        return _TOP_PX + self.rows * self.cell_height + _BOTTOM_PX

    def bands(self) -> list[range]:
        """The rows of each band, top first."""
        return [
            range(top, min(top + ROWS_PER_BAND, self.rows))
            for top in range(0, self.rows, ROWS_PER_BAND)
        ]


def write_png(coverage: Coverage, path: Path) -> None:
    """Draws ``coverage`` into ``path``; ConfigError with the install line without matplotlib."""
    try:
        for module in _MATPLOTLIB_MODULES:
            importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"the PNG report needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None
    if coverage.first is None or coverage.last is None:
        raise ConfigError("the archive has no device-day to report yet: run 'harvester run'")
    if not coverage.devices:
        raise ConfigError("no device to draw: the selection leaves none")
    unit, columns = periods(coverage.first, coverage.last)
    grid = aggregate(coverage, columns)
    layout = PictureLayout.of(len(coverage.devices), len(columns))
    picture = _Picture(coverage, unit, columns, grid, layout)
    try:
        with path.open("wb") as handle:
            png = PngStream(handle, layout.width, layout.height)
            bands = layout.bands()
            for index, rows in enumerate(bands):
                first, last = index == 0, index == len(bands) - 1
                png.write_rows(picture.render(rows, first=first, last=last))
                # A figure is a web of reference cycles: collected now, the next band reuses
                # its memory (1,000 devices: +16 MB over the bands rather than +55 MB).
                gc.collect()
            png.close()
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


class _Picture:
    """Draws the bands of one picture: the first holds the title, the last the column labels
    and the legend; each holds its rows' cells, device labels and totals."""

    def __init__(
        self,
        coverage: Coverage,
        unit: str,
        columns: Sequence[Period],
        grid: PeriodGrid,
        layout: PictureLayout,
    ) -> None:
        self._coverage = coverage
        self._unit = unit
        self._columns = columns
        self._grid = grid
        self._layout = layout
        self._label_size = 8.0 if layout.rows <= 40 else 6.0
        self._complete = grid.days_of(CellState.COMPLETE).tolist()
        self._counted = grid.days_with_data().tolist()

    def render(self, rows: range, *, first: bool, last: bool) -> npt.NDArray[np.uint8]:
        """The pixels (RGB) of the band of ``rows``, the picture's full width."""
        raw = io.BytesIO()
        self._band(rows, first=first, last=last).savefig(raw, format="rgba", dpi=_DPI)
        rgba = np.frombuffer(raw.getbuffer(), np.uint8).reshape(-1, self._layout.width, 4)
        return rgba[:, :, :3]

    def _band(self, rows: range, *, first: bool, last: bool) -> Figure:
        """The figure of ``rows``, with the title above when ``first``, the column labels and
        legend below when ``last``."""
        import matplotlib.colors
        import matplotlib.figure

        layout = self._layout
        above = _TOP_PX if first else 0
        below = _BOTTOM_PX if last else 0
        plot_height = len(rows) * layout.cell_height
        # A quarter pixel more than the pixels wanted: Agg truncates the figure's size in
        # pixels, and width / dpi * dpi can fall just short of a whole number.
        width, height = layout.width + 0.25, above + plot_height + below + 0.25
        figure = matplotlib.figure.Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        n_cols = layout.columns
        top, bottom = rows.start, rows.stop
        axes = figure.add_axes(
            (_LABEL_PX / width, below / height, layout.plot_width / width, plot_height / height)
        )
        axes.imshow(
            self._grid.state[top:bottom],
            cmap=matplotlib.colors.ListedColormap([STATE_COLOURS[state] for state in CellState]),
            vmin=-0.5,
            vmax=len(CellState) - 0.5,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, n_cols - 0.5, bottom - 0.5, top - 0.5),
        )
        axes.set_xlim(-0.5, n_cols - 0.5)
        axes.set_ylim(bottom - 0.5, top - 0.5)
        # Bands meet edge to edge: only the picture's own top and bottom get a border.
        axes.spines["top"].set_visible(first)
        axes.spines["bottom"].set_visible(last)
        devices = self._coverage.devices
        axes.set_yticks(
            list(rows),
            [f"{devices[i].name or devices[i].uuid} · {devices[i].type}" for i in rows],
            fontsize=self._label_size,
        )
        self._column_labels(axes, shown=last)
        if n_cols <= 120:
            # Thin white gaps between cells: the eye counts days, not a smear.
            gap = 0.6 if n_cols <= 60 else 0.3
            axes.vlines(np.arange(-0.5, n_cols, 1), top - 0.5, bottom - 0.5, colors="white", lw=gap)
            axes.hlines(np.arange(top - 0.5, bottom, 1), -0.5, n_cols - 0.5, colors="white", lw=gap)
        for index in rows:
            axes.text(
                1.01,
                index,
                f"{self._complete[index]}/{self._counted[index]}",
                va="center",
                ha="left",
                fontsize=self._label_size,
                transform=axes.get_yaxis_transform(),  # x in axes fractions, y in rows
            )
        if first:
            self._title(figure, height)
        if last:
            self._legend(figure)
        return figure

    def _column_labels(self, axes: Axes, *, shown: bool) -> None:
        if not shown:
            axes.tick_params(axis="x", bottom=False, labelbottom=False)
            return
        n_cols = self._layout.columns
        step = max(1, round(n_cols / 24))
        ticks = list(range(0, n_cols, step))
        labels = [self._columns[i].label for i in ticks]
        axes.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)

    def _title(self, figure: Figure, height: float) -> None:
        coverage = self._coverage
        span = f"{coverage.first} .. {coverage.last} (UTC days, one column per {self._unit})"
        figure.suptitle(f"Archive coverage · {span}", fontsize=11, y=1 - 33 / height)
        figure.text(
            0.5,
            1 - 86 / height,
            f"{summary_line(coverage)}\nserver counts from {coverage.counts_from} · "
            "right of each row: complete / device-days with data",
            ha="center",
            va="center",
            fontsize=8,
        )

    def _legend(self, figure: Figure) -> None:
        import matplotlib.patches

        totals = self._coverage.state_totals()
        handles = [
            matplotlib.patches.Patch(
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
            title=f"device-days ({self._unit} columns show their worst day)",
            title_fontsize=8,
        )
