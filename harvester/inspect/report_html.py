"""The coverage heat map as one self-contained HTML page (inline CSS, no script, no network).

A table: one row per device, one cell per day (or week, or month, see ``report.periods``);
hovering a cell shows device, day, rows stored and the server's count (the ``title``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Final

from harvester.errors import StorageError
from harvester.inspect.report import (
    LEGEND_ORDER,
    STATE_COLOURS,
    CellState,
    Coverage,
    summary_line,
)
from harvester.inspect.report_periods import Period, PeriodCell, aggregate, periods

_DEFINITIONS: Final = {
    CellState.COMPLETE: "rows stored = the server's count (> 0)",
    CellState.PARTIAL: "some rows stored, not the server's count",
    CellState.MISSING: "fetched, yet nothing stored though the server counts rows",
    CellState.FAILED: "a window gave up after its attempts; the next run retries it",
    CellState.NOT_FETCHED: "the server counts rows; no run has fetched the day yet",
    CellState.NO_DATA: "the server has no rows that day",
}


def _css(cell_px: int) -> str:
    states = "\n".join(
        f".s{state.value}{{background:{STATE_COLOURS[state]}}}" for state in CellState
    )
    return f"""
body{{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}}
h1{{font-size:18px;margin:0 0 4px}}
p{{margin:2px 0 8px}}
table.map{{border-collapse:separate;border-spacing:1px}}
table.map td.c{{width:{cell_px}px;min-width:{cell_px}px;height:14px;padding:0}}
table.map th{{font-weight:normal;text-align:left;white-space:nowrap;padding:0 6px 0 0}}
table.map th.p{{font-size:10px;height:64px;vertical-align:bottom;padding:0}}
table.map th.p span{{display:inline-block;transform:rotate(-60deg);transform-origin:left bottom;
  white-space:nowrap;width:{cell_px}px}}
table.map td.t{{padding-left:6px;white-space:nowrap;font-variant-numeric:tabular-nums}}
table.map td.c:hover{{outline:2px solid #000}}
.legend span.k{{display:inline-block;width:14px;height:14px;vertical-align:middle;
  margin:0 4px 0 12px;border:1px solid #888}}
{states}
"""


def _cell_title(name: str, column: Period, unit: str, cell: PeriodCell) -> str:
    when = column.label if unit == "day" else f"{column.label} ({column.first} .. {column.last})"
    count = f"stored {cell.stored:,} of {cell.expected:,} server records"
    text = f"{name} · {when} · {count} · {cell.state.label}"
    if unit != "day" and cell.days:
        days = ", ".join(f"{cell.days[s]} {s.label}" for s in LEGEND_ORDER if cell.days[s])
        text += f" (days: {days})"
    return text


def _header(columns: Sequence[Period], unit: str) -> str:
    step = 1 if unit != "day" or len(columns) <= 45 else 7
    labels = [
        f'<th class="p"><span>{escape(c.label) if i % step == 0 else ""}</span></th>'
        for i, c in enumerate(columns)
    ]
    return f"<tr><th></th>{''.join(labels)}<th>complete / days</th></tr>"


def render_html(coverage: Coverage, generated: dt.datetime) -> str:
    """The page as a string (see the module docstring)."""
    if coverage.first is None or coverage.last is None:
        columns: list[Period] = []
        unit = "day"
    else:
        unit, columns = periods(coverage.first, coverage.last)
    cell_px = 14 if len(columns) <= 60 else 8
    grid = aggregate(coverage, columns)
    complete, counted = grid.days_of(CellState.COMPLETE).tolist(), grid.days_with_data().tolist()
    body: list[str] = []
    for index, device in enumerate(coverage.devices):
        name = device.name or device.uuid
        label = f"{name} · {device.type} · {device.uuid}"
        cells = [
            f'<td class="c s{cell.state.value}" '
            f'title="{escape(_cell_title(label, column, unit, cell))}"></td>'
            for column, cell in zip(columns, grid.row(index), strict=True)
        ]
        body.append(
            f"<tr><th>{escape(label)}</th>{''.join(cells)}"
            f'<td class="t">{complete[index]} / {counted[index]}</td></tr>'
        )
    totals = coverage.state_totals()
    legend = "".join(
        f'<span class="k s{state.value}"></span><b>{state.label}</b> {totals[state]:,} '
        f"<small>({escape(_DEFINITIONS[state])})</small>"
        for state in LEGEND_ORDER
    )
    span = f"{coverage.first} .. {coverage.last}" if coverage.first else "no days yet"
    worst = (
        f" A {unit} column shows its worst day (failed, missing, partial, not fetched, "
        "complete, no data); hover for the day counts."
        if unit != "day"
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Archive coverage {escape(span)}</title>
<style>{_css(cell_px)}</style></head>
<body>
<h1>Archive coverage · {escape(span)} (UTC days)</h1>
<p>{escape(summary_line(coverage))}. Counts from {escape(coverage.counts_from)}.
Generated {generated:%Y-%m-%d %H:%M %Z}.{escape(worst)}</p>
<p class="legend">{legend}</p>
<table class="map">
{_header(columns, unit)}
{"".join(body)}
</table>
</body></html>
"""


def write_html(coverage: Coverage, path: Path, generated: dt.datetime) -> None:
    try:
        path.write_text(render_html(coverage, generated), encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
