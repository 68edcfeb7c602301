"""The command line starts light: help loads none of the heavy libraries, and ``status`` loads
no HTTP client. Each case runs the console script's entry point in a fresh interpreter and
reports which of the heavy top-level packages it imported by the time it exited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiohttp", "matplotlib", "numpy", "pandas", "polars", "pyarrow", "rich", "structlog")
COMMANDS = ("plan", "run", "status", "verify", "report", "probe", "demo", "simulate")

_CHILD = f"""
import atexit, sys
def loaded():
    found = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
    sys.stderr.write("\\nloaded [" + ",".join(found) + "]\\n")
atexit.register(loaded)
sys.argv = ["harvester", *sys.argv[1:]]
from harvester.entry import main
raise SystemExit(main())
"""


def _harvester(*argv: str) -> tuple[int, str, set[str]]:
    """(exit code, stdout, heavy packages imported) of ``harvester ARGV`` in a new process."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, timeout=60
    )
    last = done.stderr.rstrip().splitlines()[-1]
    assert last.startswith("loaded ["), done.stderr[-2000:]
    names = last.removeprefix("loaded [").removesuffix("]")
    return done.returncode, done.stdout, set(filter(None, names.split(",")))


def test_the_top_level_help_loads_no_heavy_library_and_names_every_command() -> None:
    """``harvester --help`` describes the tool and lists every command, in plain text (no rst
    markup), having imported none of pyarrow, numpy, aiohttp, rich, structlog or pandas."""
    code, stdout, loaded = _harvester("--help")
    assert code == 0
    assert loaded == set()
    assert "Parquet archive" in stdout
    assert "examples:" in stdout
    assert "``" not in stdout
    for command in COMMANDS:
        assert f"\n    {command} " in stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_describes_it_and_loads_no_heavy_library(command: str) -> None:
    """``harvester COMMAND --help`` says what the command does in a paragraph of plain text
    and shows its options, without importing any heavy library."""
    code, stdout, loaded = _harvester(command, "--help")
    assert code == 0
    assert loaded == set()
    description = stdout.split("\n\n")[1]
    assert len(description.split()) >= 15, description
    assert "``" not in stdout
    assert "--log-format" in stdout


def test_status_loads_no_http_client(tmp_path: Path) -> None:
    """``harvester status`` reads the checkpoint only: it imports no aiohttp (nor the
    simulator's web server, nor matplotlib)."""
    (tmp_path / "out" / "_harvest").mkdir(parents=True)
    code, stdout, loaded = _harvester("status", "--out", str(tmp_path / "out"))
    assert code == 0, stdout
    assert "devices          0" in stdout
    assert "aiohttp" not in loaded
    assert "matplotlib" not in loaded
