"""``harvester simulate``: the SENSIT Connect simulator in the foreground."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("simulate", help="run the simulator")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    raise NotImplementedError("the simulator is being built (issue 2)")
