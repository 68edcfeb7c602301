"""``harvester probe``: options in, one call into ``harvester.probe``, one row per assumption
printed (or, with ``--log-format json``, one JSON document). The probe itself is imported when
the command runs (see ``harvester.cli``)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from harvester.cli.common import (
    HelpFormatter,
    add_common_options,
    load_config,
    printable,
    setup_logging,
)

if TYPE_CHECKING:
    from harvester.probe.session import ProbeReport

DESCRIPTION = """\
Before a first real run: check, with at most 40 read-only requests at most 2 a
second, every assumption the harvester makes about the service (sign-in and token
life, the device list, available dates and their time zone, whether a day's count
matches its windows, envelope, order and date format of records, whether a
window's ends are inclusive, what a window over 2 hours gets, the vendor's
spellings, rate limits, compression, latency) and estimate a full back-fill at
--rps. One row each: PASS, DIFFERENT (what was seen, what the harvester does, and
whether 'run' is still safe) or UNKNOWN (why it could not be told). Nothing is
written to --out.
"""
EPILOG = """\
examples:
  export SENSIT_EMAIL=you@example.com SENSIT_PASSWORD='...'
  harvester probe
  harvester probe --device 1041 --record probe-recording --scramble

--record DIR saves every exchange (docs/recording.md) without the password,
tokens, e-mail, user id, or the devices' names, locations, pictures and keys;
--scramble also replaces every measured value (coordinates in records
included). Attach DIR to a bug report; 'harvester simulate --replay DIR' serves
it back. With --log-format json the rows are one JSON document on stdout.

exit codes: 0 every assumption holds (or could not be told); 1 something differs
(each row says whether run is still safe); 2 usage or configuration error;
3 sign-in refused.
"""


def register(commands: Any) -> None:
    probe = commands.add_parser(
        "probe",
        help="check every assumption about the service with a few read-only requests",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_common_options(probe)
    probe.add_argument("--rps", help="request rate the back-fill estimate is made for (20)")
    probe.add_argument("--concurrency", help="requests in flight the estimate assumes (16)")
    probe.add_argument(
        "--device",
        metavar="UUID",
        help="the device to probe (default: the one with the newest data)",
    )
    probe.add_argument(
        "--record",
        metavar="DIR",
        type=Path,
        help="save every exchange, redacted, in DIR (docs/recording.md)",
    )
    probe.add_argument(
        "--scramble",
        action="store_true",
        help="with --record: replace every measured value by another of the same shape",
    )
    probe.set_defaults(handler=_probe, parser=probe)


def _probe(args: argparse.Namespace) -> int:
    from harvester.probe.judge import exit_code
    from harvester.probe.session import ProbeOptions, run_probe

    if args.scramble and args.record is None:
        args.parser.error("--scramble applies only with --record DIR")
    setup_logging(args)
    config = load_config(args)
    options = ProbeOptions(device=args.device, record=args.record, scramble=args.scramble)
    report = asyncio.run(run_probe(config, options))
    if args.log_format == "json":
        print_json(report)
    else:
        print_rows(report)
    return exit_code(report.rows)


def print_rows(report: ProbeReport) -> None:
    from harvester.probe.judge import PASS, verdict

    findings = report.findings
    if findings.device is not None:
        day = f", day {findings.day.day} (UTC): {findings.day_reason}" if findings.day else ""
        print(
            f"device {findings.device.type} {printable(findings.device.uuid)} "
            f"({printable(findings.device_reason)}){printable(day)}"
        )
    width = max(len(row.assumption) for row in report.rows)
    for row in report.rows:
        print(f"{row.outcome:<9} {row.assumption:<{width}}  {printable(row.seen)}")
        if row.outcome != PASS:
            run = "" if row.safe is None else "run is safe: " if row.safe else "run is NOT safe: "
            print(f"{'':<9} {'':<{width}}  -> {run}{printable(row.harvester)}")
    stopped = f"; stopped early: {findings.stopped}" if findings.stopped else ""
    print(
        f"{report.requests} requests of at most {findings.budget}, at most "
        f"{findings.paced_rps:g} a second{stopped}"
    )
    if report.recorded is not None:
        print(f"recorded in {report.recorded}")
    print(f"probe {verdict(report.rows)}")


def print_json(report: ProbeReport) -> None:
    from harvester.probe.judge import exit_code, verdict

    findings = report.findings
    document = {
        "rows": [row.as_dict() for row in report.rows],
        "device": None
        if findings.device is None
        else {"uuid": findings.device.uuid, "type": findings.device.type},
        "day": None if findings.day is None else findings.day.day.isoformat(),
        "requests": report.requests,
        "budget": findings.budget,
        "paced_rps": findings.paced_rps,
        "stopped": findings.stopped or None,
        "recorded": None if report.recorded is None else str(report.recorded),
        "verdict": verdict(report.rows),
        "exit_code": exit_code(report.rows),
    }
    print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
