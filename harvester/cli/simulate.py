"""``harvester simulate``: the SENSIT Connect simulator in the foreground.

Prints one line holding ``http://HOST:PORT`` once it listens, serves until SIGINT/SIGTERM,
then exits 0. Invalid option values, and a ``--replay`` recording that cannot be read, are a
usage error (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from harvester.cli.common import DefaultsHelpFormatter, add_logging_options, setup_logging
from harvester.errors import ConfigError
from harvester.simulator.options import FAULT_KINDS, SWITCHES, SimulatorOptions
from harvester.simulator.parsing import parse_instant

_DEFAULTS = SimulatorOptions()
_DESCRIPTION = """\
Run the SENSIT Connect simulator in the foreground: an HTTP server with the real
API's routes, serving seeded, reproducible sensor data (with faults and rate
limits if asked). It prints one line holding http://HOST:PORT once it listens and
serves until Ctrl-C or SIGTERM, then exits 0. Point 'harvester run --base-url' at it.
"""
_EPILOG = """\
example, in two terminals:
  harvester simulate --port 8080 --devices 6 --days 30 --fault-rate 0.05
  harvester run --base-url http://127.0.0.1:8080 --email demo@example.com --password demo
"""
_SWITCH_HELP = {
    "bounds": "which records a window holds: [start, end], [start, end) or (start, end)",
    "order": "a window's records newest first or oldest first",
    "over_cap": "a window over --max-window-h: 400, or silently only its first hours",
    "envelope": 'records as {"data": [...]} or as a bare JSON array',
    "date_style": "dates as 2024-01-01T00:00:00.000Z, 2024-01-01T00:00:00Z or 2024-01-01 00:00:00",
}


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _instant(text: str) -> dt.datetime:
    moment = parse_instant(text)
    if moment is None:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {text!r}")
    return moment


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"fault kinds are a comma list of {', '.join(FAULT_KINDS)}; got {text!r}"
        )
    return kinds


def register(commands: Any) -> None:
    """Add the ``simulate`` sub-command to the CLI's sub-parsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="run the SENSIT Connect simulator in the foreground",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=DefaultsHelpFormatter,
    )
    d = _DEFAULTS
    add = parser.add_argument
    add("--host", default=d.host, help="address to listen on")
    add("--port", type=int, default=d.port, help="port (0 = any free port)")
    add("--seed", type=int, default=d.seed, help="seed of all generated data")
    add("--devices", type=int, default=d.devices, help="devices, spread over FMD/SPOD/RAMP")
    add("--start", type=_date, default=d.start, help="first day of data (YYYY-MM-DD)")
    add("--days", type=int, default=d.days, help="days of data from --start")
    add("--cadence-s", type=int, default=d.cadence_s, help="seconds between records")
    add("--latency-ms", type=float, default=d.latency_ms, help="added latency (±20%% jitter)")
    add("--fault-rate", type=float, default=d.fault_rate, help="share of data calls that fail")
    add(
        "--fault-kinds",
        type=_kinds,
        default=d.fault_kinds,
        help=f"comma list of fault kinds to inject ({','.join(FAULT_KINDS)})",
    )
    add("--slow-fault-s", type=float, default=d.slow_fault_s, help="delay of a 'slow' fault")
    add(
        "--max-consecutive-faults",
        type=int,
        default=d.max_consecutive_faults,
        help="a request never fails more often than this in a row",
    )
    add("--cache-mb", type=int, default=d.cache_mb, help="memory for rendered record blocks")
    add("--rate-limit", type=float, default=d.rate_limit, help="requests/s per account (0=off)")
    add("--token-ttl-s", type=int, default=d.token_ttl_s, help="access token lifetime")
    add("--max-window-h", type=float, default=d.max_window_h, help="longest records window")
    add("--email", default=d.email, help="the account's e-mail")
    add("--password", default=d.password, help="the account's password")
    add(
        "--now",
        type=_instant,
        default=None,
        help="simulated present (ISO-8601; default 14:00 UTC on the last day)",
    )
    switches = parser.add_argument_group(
        "assumptions", "each flips one assumption about the real service (default: the vendor's)"
    )
    for flag, name, choices in SWITCHES:
        switches.add_argument(
            flag, choices=choices, default=getattr(d, name), help=_SWITCH_HELP[name]
        )
    add(
        "--replay",
        type=Path,
        metavar="DIR",
        default=None,
        help="serve the session recorded in DIR (docs/recording.md) instead of simulated data",
    )
    add_logging_options(parser)
    parser.set_defaults(handler=_run, parser=parser)


def _announce(url: str) -> None:
    sys.stdout.write(f"SENSIT Connect simulator listening on {url}\n")
    sys.stdout.flush()


def options_of(args: argparse.Namespace) -> SimulatorOptions:
    """The simulator options that parsed arguments ask for."""
    return SimulatorOptions(
        host=args.host,
        port=args.port,
        seed=args.seed,
        devices=args.devices,
        start=args.start,
        days=args.days,
        cadence_s=args.cadence_s,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_kinds=args.fault_kinds,
        slow_fault_s=args.slow_fault_s,
        max_consecutive_faults=args.max_consecutive_faults,
        cache_mb=args.cache_mb,
        rate_limit=args.rate_limit,
        token_ttl_s=args.token_ttl_s,
        max_window_h=args.max_window_h,
        email=args.email,
        password=args.password,
        now=args.now,
        replay=args.replay,
        **{name: getattr(args, name) for _, name, _ in SWITCHES},
    )


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    options = options_of(args)
    problems = options.problems()
    if problems:
        args.parser.error(problems[0])
    # aiohttp.web loads only for the command that serves.
    from harvester.simulator.server import serve_until_signalled

    try:
        asyncio.run(serve_until_signalled(options, _announce))
    except ConfigError as exc:
        args.parser.error(str(exc))
    except OSError as exc:
        args.parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0
