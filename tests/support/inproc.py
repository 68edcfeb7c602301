"""Run harvester commands in this process (fast) and capture what they print."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pyarrow as pa

from harvester.cli import main

RECORDS_ROUTE = "DeviceLogForGivenHour"


def harvest(
    url: str, out: Path, *extra: str, command: str = "run", password: str = "demo"
) -> tuple[int, str, str]:
    """``harvester <command>`` against ``url`` into ``out``; returns (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [command, "--base-url", url, "--email", "demo@example.com", "--password", password]
    argv += ["--out", str(out), "--log-format", "json", "--rps", "500", *extra]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def record_requests(stats: dict[str, Any]) -> int:
    """Record-window calls the simulator answered, whatever the status."""
    return sum(
        count
        for route, by_status in stats["requests"].items()
        if RECORDS_ROUTE in route
        for count in by_status.values()
    )


def assert_same_records(table: pa.Table, expected: dict[str, dict[str, Any]]) -> None:
    """The archive holds exactly the expected records, each once, with the same times."""
    ids = table.column("_id").to_pylist()
    assert len(ids) == len(set(ids)), "a record is stored twice"
    assert set(ids) == set(expected)
    stored = dict(zip(ids, table.column("date").to_pylist(), strict=True))
    for record_id, record in expected.items():
        when = dt.datetime.fromisoformat(record["date"].replace("Z", "+00:00"))
        assert stored[record_id] == when
