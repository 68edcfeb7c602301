"""``harvester report``: the archive's coverage as a PNG heat map and an HTML page.

Reads the checkpoint, the day files' footers and the device list under OUT: no network,
unless ``--verify`` asks the server for its counts of now.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from harvester.api.client import ClientSettings, SensitClient
from harvester.archive.availability import DayCounts, read_availability
from harvester.archive.layout import HARVEST_DIR
from harvester.cli.common import add_common_options, load_config, setup_logging
from harvester.config import HarvestConfig
from harvester.errors import StorageError
from harvester.fetch.gate import RequestGate
from harvester.harvest import (
    discover,
    open_storage,
    read_all_checkpoints,
)
from harvester.inspect.report import (
    Coverage,
    build_coverage,
    read_devices,
    stored_rows,
    summary_line,
)
from harvester.inspect.report_html import write_html
from harvester.inspect.report_png import write_png

PNG_NAME = "coverage.png"
HTML_NAME = "coverage.html"


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="coverage heat map (PNG + HTML) from the checkpoint and the files; no network",
    )
    add_common_options(report)
    report.add_argument(
        "--output-dir",
        type=Path,
        default=Path("."),
        help=f"folder for {PNG_NAME} and {HTML_NAME} (default: the current folder)",
    )
    report.add_argument(
        "--verify",
        action="store_true",
        help="ask the server for its counts of now instead of the last run's (needs sign-in)",
    )
    report.add_argument("--rps", help="request rate ceiling per second, with --verify (20)")
    report.add_argument("--concurrency", help="requests in flight, with --verify (16)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    coverage = collect(config, verify=args.verify)
    output: Path = args.output_dir
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create --output-dir {output}: {exc.strerror}") from exc
    generated = dt.datetime.now(config.zone)
    # The HTML needs nothing optional: write it first, so a missing matplotlib costs the PNG only.
    write_html(coverage, output / HTML_NAME, generated)
    print(f"wrote {output / HTML_NAME}")
    write_png(coverage, output / PNG_NAME)
    print(f"wrote {output / PNG_NAME}")
    print(summary_line(coverage))
    return 0


def collect(config: HarvestConfig, *, verify: bool = False) -> Coverage:
    """The coverage of ``config.out`` (restricted to its device and day selection)."""
    storage = open_storage(config)
    if not storage.list_files(f"{HARVEST_DIR}/"):
        raise StorageError(f"no archive at --out {config.out}: run 'harvester run' first")
    journal = read_all_checkpoints(storage)
    devices = read_devices(storage)
    server_days: DayCounts = (
        asyncio.run(_server_days(config)) if verify else read_availability(storage)
    )
    coverage = build_coverage(
        devices,
        journal.days(),
        stored_rows(storage),
        server_days,
        counts_are_current=verify,
        since=config.since,
        until=config.until,
    )
    rows = [
        row
        for row in coverage.rows
        if config.device_type in ("ALL", row.device.type)
        and (not config.devices or row.device.uuid in config.devices)
    ]
    return Coverage(rows, coverage.first, coverage.last, coverage.counts_from)


async def _server_days(config: HarvestConfig) -> DayCounts:
    async with SensitClient(ClientSettings.from_config(config)) as client:
        found = await discover(client, config, RequestGate(config.rps))
    return {
        device.uuid: {a.day: a.count for a in days} for device, days in found.availability.items()
    }
