"""``harvester report``: the archive's coverage as a PNG heat map and an HTML page.

Options in, one call into ``harvester.inspect`` for the coverage, the two files written.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from harvester.cli.common import HelpFormatter, add_common_options, load_config, setup_logging
from harvester.errors import ConfigError, StorageError

PNG_NAME = "coverage.png"
HTML_NAME = "coverage.html"

REPORT_DESCRIPTION = f"""\
Draw the archive's coverage, device by device and day by day (complete, partial,
missing, failed, not fetched, no data), as {PNG_NAME} and a self-contained
{HTML_NAME}. Reads the checkpoint, the files' footers and the device list the
last run recorded: no network, unless --verify asks the server for its counts of
now. Long ranges are drawn per week or month, each showing its worst day.
"""
REPORT_EPILOG = """\
examples:
  harvester report --out sensit-data --output-dir coverage/
  harvester report --out sensit-data --since 2024-01-01 --device-type SPOD --verify
"""


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="coverage heat map (PNG and HTML); no network unless --verify",
        description=REPORT_DESCRIPTION,
        epilog=REPORT_EPILOG,
        formatter_class=HelpFormatter,
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
    from harvester.entry import release_free_heap
    from harvester.inspect.report import summary_line
    from harvester.inspect.report_html import write_html
    from harvester.inspect.report_png import write_png
    from harvester.inspect.sources import collect_coverage

    setup_logging(args)
    config = load_config(args)
    coverage = collect_coverage(config, verify=args.verify, release_memory=release_free_heap)
    if not coverage.devices and (config.devices or config.device_type != "ALL"):
        chosen = ", ".join(config.devices) if config.devices else f"type {config.device_type}"
        raise ConfigError(f"no device of the archive matches the selection ({chosen})")
    output: Path = args.output_dir
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create --output-dir {output}: {exc.strerror}") from exc
    generated = dt.datetime.now(config.zone)
    # The HTML needs nothing optional: write it first, so a missing matplotlib costs the PNG only.
    write_html(coverage, output / HTML_NAME, generated)
    print(f"wrote {output / HTML_NAME}")
    release_free_heap()  # the page's text, let go below the coverage kept
    write_png(coverage, output / PNG_NAME)
    print(f"wrote {output / PNG_NAME}")
    print(summary_line(coverage))
    return 0
