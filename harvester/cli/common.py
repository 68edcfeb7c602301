"""Options shared by plan/run/status/verify, and turning them into a ``HarvestConfig``.

Light on purpose: the parser is built on every start, ``--help`` included. The configuration
(which loads numpy through ``harvester.models``) and structlog (which loads rich) are imported
only when a command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harvester.config import HarvestConfig


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs printed as written (paragraphs, examples one a line)."""


class DefaultsHelpFormatter(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``HelpFormatter`` that also shows each option's default."""


# Flags whose value feeds the config; the rest (logging, --config) are handled here.
_CONFIG_FLAGS = (
    "base_url",
    "email",
    "password",
    "out",
    "s3_endpoint",
    "shard",
    "partition",
    "device_type",
    "devices",
    "since",
    "until",
    "timezone",
    "concurrency",
    "rps",
    "max_attempts",
    "connect_timeout_s",
    "read_timeout_s",
    "max_response_mb",
    "window_429_budget_s",
    "ca_bundle",
)


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="console: key=value lines; json: one object a line (both on stderr)",
    )
    group.add_argument("-v", "--verbose", action="count", default=0, help="more detail (-vv)")
    group.add_argument("-q", "--quiet", action="count", default=0, help="warnings only")


def add_common_options(parser: argparse.ArgumentParser, *, network: bool = True) -> None:
    """The options of interface.md; ``network`` adds the server and selection ones."""
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument(
        "--out", help="archive folder or URI such as s3://bucket/prefix (default ./sensit-data)"
    )
    parser.add_argument(
        "--s3-endpoint", help="S3-compatible store (MinIO, Ceph) URL, e.g. http://minio:9000"
    )
    parser.add_argument("--timezone", help="IANA zone for --since/--until and reports (UTC)")
    if network:
        parser.add_argument("--base-url", help="API root (default https://api.sensitconnect.net)")
        parser.add_argument("--email", help="account email (or SENSIT_EMAIL)")
        parser.add_argument("--password", help="account password (prefer SENSIT_PASSWORD)")
        parser.add_argument("--device-type", help="ALL, FMD, SPOD or RAMP (default ALL)")
        parser.add_argument("--devices", help="comma-separated device uuids (default all)")
        parser.add_argument("--since", help="first local day YYYY-MM-DD, inclusive")
        parser.add_argument("--until", help="last local day YYYY-MM-DD, inclusive")
        parser.add_argument("--ca-bundle", help="extra CA certificates (PEM) to trust")
        parser.add_argument("--connect-timeout-s", help="TCP/TLS connect timeout (10)")
        parser.add_argument("--read-timeout-s", help="per-request read timeout (60)")
        parser.add_argument("--max-response-mb", help="largest reply body accepted, in MiB (32)")
    add_logging_options(parser)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", help="requests in flight at once (16)")
    parser.add_argument("--rps", help="request rate ceiling per second (20)")
    parser.add_argument("--max-attempts", help="attempts per window before it is failed (8)")
    parser.add_argument(
        "--window-429-budget-s",
        help="seconds one window's own 429s may hold it before it is failed (90)",
    )
    parser.add_argument(
        "--partition",
        help="day or month: one file per device-day or device-month, chosen when the archive "
        "is created (day)",
    )
    add_shard_option(parser)


def add_shard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard", help="K/N: harvest only the devices of shard K of N (0 <= K < N; SENSIT_SHARD)"
    )


def setup_logging(args: argparse.Namespace) -> None:
    from harvester.logging import configure_logging

    configure_logging(args.log_format, args.verbose - args.quiet)


def load_config(args: argparse.Namespace) -> HarvestConfig:
    """Flags > SENSIT_* environment > --config file > defaults, validated."""
    from harvester.config import read_config_file, resolve_config
    from harvester.logging import register_secret

    flags: dict[str, Any] = {k: getattr(args, k, None) for k in _CONFIG_FLAGS}
    file_values = read_config_file(args.config) if args.config else None
    config = resolve_config(flags, os.environ, file_values, file_name=str(args.config))
    if config.password is not None:
        register_secret(config.password.reveal())
    return config


def printable(text: str) -> str:
    """Server text as it may reach a terminal: control characters (an ANSI escape, a NUL, a
    carriage return that would overwrite the line) are shown as Python escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
