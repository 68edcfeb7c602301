"""The ``harvester`` command line: parses options, configures logging, maps errors to exit codes.

Exit codes: 0 done · 1 some windows failed, verify found a mismatch, or the server failed ·
2 usage, configuration or storage error · 3 authentication failed · 130 interrupted.

Each command module registers its options from light modules only (argparse, the standard
library, ``harvester.errors``, the simulator's options); what a command needs to run
(``harvester.harvest``, ``harvester.inspect``, ``harvester.probe``: aiohttp, pyarrow, numpy,
rich) its handler imports when it runs. So ``harvester --help`` loads none of them, and
``status`` loads no HTTP client (``tests/test_cli_startup.py``). The CLI reaches the core only
through ``harvester.harvest``, ``harvester.inspect`` and ``harvester.probe``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import traceback
from collections.abc import Sequence

from harvester import __version__
from harvester.cli import demo, harvest, inspect, probe, report, simulate
from harvester.cli.common import HelpFormatter, printable
from harvester.errors import (
    AuthError,
    ConfigError,
    HarvesterError,
    Interrupted,
    StorageError,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse declares NoReturn
        hint = self._suggestion(message)
        sys.stderr.write(f"harvester: error: {message}{hint} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)

    def _suggestion(self, message: str) -> str:
        """'did you mean --x?' for a misspelled option (subcommands' options included)."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return ""
        known = set(self._option_string_actions)
        for action in self._actions:
            # argparse's one handle on the subcommands' options
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    known.update(parser._option_string_actions)
        words = message.removeprefix(prefix).split()
        for word in (w.split("=", 1)[0] for w in words if w.startswith("--")):
            close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)
            if close:
                return f"; did you mean {close[0]}?"
        return ""


DESCRIPTION = """\
Back-fill the whole history of your SENSIT Connect sensors (FMD, SPOD, RAMP) into
a Hive-partitioned Parquet archive, keep it topped up, and check it against the
server's own daily counts. Every run resumes after any crash or Ctrl-C, and the
archive holds each record exactly once.
"""
EPILOG = """\
examples:
  export SENSIT_EMAIL=you@example.com SENSIT_PASSWORD='...'
  harvester plan --since 2024-01-01 --until 2024-12-31 --timezone America/Chicago
  harvester run --since 2024-01-01 --until 2024-12-31 --out sensit-data
  harvester status --out sensit-data
  harvester verify --out sensit-data

Settings come from flags, SENSIT_* environment variables and a TOML file
(--config), in that order of precedence. 'harvester demo' tries it all out
against the built-in simulator.

exit codes: 0 done; 1 some windows or devices failed, or verify found a
mismatch; 2 usage, configuration or storage error; 3 sign-in refused;
130 interrupted (the next run resumes).

Run 'harvester COMMAND --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harvester", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"harvester {__version__}")
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", required=True, parser_class=_Parser
    )
    for command in (harvest, inspect, probe, report, demo, simulate):
        command.register(commands)
    return parser


def exit_code_for(error: BaseException) -> int:
    """The documented exit code of an error class."""
    if isinstance(error, ConfigError | StorageError):
        return EXIT_USAGE
    if isinstance(error, AuthError):
        return EXIT_AUTH
    if isinstance(error, Interrupted | KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", 0) > 0
    try:
        code: int = args.handler(args)
    except (HarvesterError, KeyboardInterrupt) as exc:
        if verbose:
            traceback.print_exc()
        message = str(exc) or "interrupted"
        for line in message.splitlines():
            sys.stderr.write(f"harvester: error: {printable(line)}\n")
        return exit_code_for(exc)
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write(
            f"harvester: internal error: {type(exc).__name__}: {printable(str(exc))} "
            "(run with -v for details)\n"
        )
        return EXIT_FAILED
    return code
