"""The report's columns: days, ISO weeks or months, and each device's cells folded into them.

Long ranges are drawn per ISO week or per month; a period takes its worst day's state
(the order of ``report.CellState``, failed first, no data last), so one hole is never
averaged away. The folding is vectorised over the coverage's columns; only the folded
cells (devices x periods, e.g. 1,000 x 60 months) become Python objects, one row at a time.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from harvester.inspect.report import CellState, Coverage

#: Beyond these many days a column is an ISO week; beyond the second, a month.
DAYS_PER_DAY_COLUMN: Final = 92
DAYS_PER_WEEK_COLUMN: Final = 3 * 366 + 31


@dataclass(frozen=True, slots=True)
class Period:
    """One column of the picture: the days ``first .. last`` (inclusive)."""

    first: dt.date
    last: dt.date
    label: str


@dataclass(slots=True)
class PeriodCell:
    """A device over one period: its worst day, and how many days of each state it holds."""

    state: CellState = CellState.NO_DATA
    stored: int = 0
    expected: int = 0
    days: Counter[CellState] = field(default_factory=Counter)


def periods(first: dt.date, last: dt.date) -> tuple[str, list[Period]]:
    """Columns for ``first .. last``: days, ISO weeks or months, as the span requires."""
    span = (last - first).days + 1
    columns: list[Period] = []
    if span <= DAYS_PER_DAY_COLUMN:
        for offset in range(span):
            day = first + dt.timedelta(days=offset)
            columns.append(Period(day, day, day.isoformat()))
        return "day", columns
    if span <= DAYS_PER_WEEK_COLUMN:
        start = first - dt.timedelta(days=first.weekday())
        while start <= last:
            end = start + dt.timedelta(days=6)
            year, week, _ = start.isocalendar()
            columns.append(Period(max(start, first), min(end, last), f"{year}-W{week:02d}"))
            start = end + dt.timedelta(days=1)
        return "week", columns
    month = first.replace(day=1)
    while month <= last:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        end = following - dt.timedelta(days=1)
        columns.append(Period(max(month, first), min(end, last), f"{month:%Y-%m}"))
        month = following
    return "month", columns


@dataclass(frozen=True, slots=True)
class PeriodGrid:
    """The coverage folded into columns: arrays of (device, column)."""

    state: npt.NDArray[np.int8]
    """The worst day's ``CellState`` (no data where the period has no known day)."""
    stored: npt.NDArray[np.int64]
    expected: npt.NDArray[np.int64]
    days: npt.NDArray[np.int64]
    """(device, column, state): how many days of each state the period holds."""

    def row(self, device: int) -> list[PeriodCell]:
        """One device's cells as objects (the HTML's titles need each one)."""
        states, stored, expected = (
            a[device].tolist() for a in (self.state, self.stored, self.expected)
        )
        days = self.days[device].tolist()
        return [
            PeriodCell(
                CellState(states[column]),
                stored[column],
                expected[column],
                Counter({CellState(s): n for s, n in enumerate(days[column]) if n}),
            )
            for column in range(len(states))
        ]

    def days_of(self, state: CellState) -> npt.NDArray[np.int64]:
        """Per device: its days of ``state`` over all columns."""
        total: npt.NDArray[np.int64] = self.days[:, :, state].sum(axis=1)
        return total

    def days_with_data(self) -> npt.NDArray[np.int64]:
        """Per device: its days of any state but no data."""
        total: npt.NDArray[np.int64] = self.days[:, :, CellState.NO_DATA + 1 :].sum(axis=(1, 2))
        return total


def aggregate(coverage: Coverage, columns: list[Period]) -> PeriodGrid:
    """Every device's cells folded into ``columns`` (days outside every column are ignored):
    each cell's day is looked up in a table of the columns' days, then counted into its
    (device, column) with ``bincount`` and ``add.at``."""
    n_devices, n_columns, n_states = len(coverage.devices), len(columns), len(CellState)
    shape, size = (n_devices, n_columns), n_devices * n_columns
    if not columns:
        none = np.zeros(shape, np.int64)
        return PeriodGrid(none.astype(np.int8), none, none, np.zeros((*shape, n_states), np.int64))
    first = columns[0].first.toordinal()
    column_of = np.full(columns[-1].last.toordinal() - first + 1, -1, np.int32)
    for index, period in enumerate(columns):
        column_of[period.first.toordinal() - first : period.last.toordinal() - first + 1] = index
    cells = coverage.cells
    offset = cells.day - first
    inside = (offset >= 0) & (offset < len(column_of))
    column = np.where(inside, column_of.take(np.where(inside, offset, 0)), -1)
    del offset, inside
    kept = column >= 0
    # Every day is in a column unless the columns are narrower than the coverage: then the
    # cells' columns are used as they are, not copied.
    rows: npt.NDArray[np.bool_] | slice = slice(None) if kept.all() else kept
    flat = cells.device[rows].astype(np.int64)  # (device, column) as one index into the grid
    flat *= n_columns
    flat += column[rows]
    del column, kept
    days = np.bincount(flat * n_states + cells.state[rows], minlength=size * n_states).reshape(
        *shape, n_states
    )
    # The worst state present is the largest with a day (no data when there is none).
    worst = np.where(days > 0, np.arange(n_states), 0).max(axis=2, initial=0).astype(np.int8)
    stored = np.zeros(size, np.int64)
    expected = np.zeros(size, np.int64)
    np.add.at(stored, flat, cells.stored[rows])
    np.add.at(expected, flat, cells.expected[rows])
    return PeriodGrid(worst, stored.reshape(shape), expected.reshape(shape), days)
