"""Run harvester commands in this process (fast) and capture what they print."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

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
