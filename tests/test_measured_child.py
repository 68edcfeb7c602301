"""``scripts/measured_child.py``: a command the benches measure reports its own peak RSS.

On Linux a child's ``ru_maxrss`` counts the peak RSS of the memory it was exec'ed from, its
parent's: a bench process of several GB made every command it measured read several GB. The
benches start each measured command through a small launcher, so its figures are its own;
signals reach the command through the launcher, and nothing it started outlives it.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts")]

import bench_scale  # noqa: E402  -- a script, importable once scripts/ is on the path
import measured_child  # noqa: E402  -- idem

pytestmark = pytest.mark.slow

GROWN_MB = 400


@pytest.fixture
def grown() -> Iterator[None]:
    """This process's peak RSS raised to over ``GROWN_MB`` MB (every page of a buffer touched)."""
    buffer = bytearray(GROWN_MB << 20)
    buffer[::4096] = b"\x01" * len(range(0, len(buffer), 4096))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= GROWN_MB << 10
    yield
    del buffer


@pytest.mark.usefixtures("grown")
def test_a_command_measured_from_a_big_process_reports_its_own_small_peak() -> None:
    """Measured from a process whose peak is over 400 MB, ``python -c pass`` and ``harvester
    --version`` (through the scale scenario's ``_measured``) report peaks of tens of MB: their own,
    not the measuring process's."""
    with measured_child.Measured([sys.executable, "-c", "pass"]) as run:
        usage = run.wait()
    assert usage is not None
    assert usage.exit == 0
    assert 0 < usage.peak_rss_mb < 100, usage
    figures, _ = bench_scale._measured(["--version"])
    assert figures["exit"] == 0, figures
    assert figures["stdout"][0].startswith("harvester"), figures
    assert 0 < figures["peak_rss_mb"] < 200, figures


def test_the_peak_of_a_command_that_grows_is_reported() -> None:
    """A command touching a 150 MB buffer reports a peak above 150 MB (its own memory counts)."""
    grow = "b = bytearray(150 << 20)\nb[::4096] = b'\\x01' * len(range(0, len(b), 4096))"
    with measured_child.Measured([sys.executable, "-c", grow]) as run:
        usage = run.wait()
    assert usage is not None
    assert usage.exit == 0
    assert usage.peak_rss_mb > 150, usage


def _ready(path: Path) -> None:
    """Wait (bounded) for the command to write ``path``: its signal handling is in place."""
    for _ in range(2000):
        if path.exists():
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never written")


def test_an_interrupt_reaches_the_command_through_the_launcher(tmp_path: Path) -> None:
    """``interrupt`` delivers SIGINT to the command, whose own exit code is reported."""
    ready = tmp_path / "ready"
    script = (
        "import pathlib, sys, time\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(3)\n"
    )
    with measured_child.Measured([sys.executable, "-c", script]) as run:
        _ready(ready)
        run.interrupt()
        usage = run.wait()
    assert usage is not None
    assert usage.exit == 3


def _gone(pid: int) -> bool:
    """No such process, or a zombie (killed, not yet reaped by its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_a_killed_command_is_reported_and_what_it_started_does_not_outlive_it(
    tmp_path: Path,
) -> None:
    """A command ignoring SIGINT is killed on ``kill`` (exit -9, its usage still reported),
    and the process it started is killed with its process group."""
    ready, grandchild = tmp_path / "ready", tmp_path / "grandchild"
    script = (
        "import pathlib, signal, subprocess, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "sleeper = subprocess.Popen(['sleep', '60'])\n"
        f"pathlib.Path({str(grandchild)!r}).write_text(str(sleeper.pid))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    with measured_child.Measured([sys.executable, "-c", script]) as run:
        _ready(ready)
        run.interrupt()
        assert run.poll() is None  # ignored: still running
        run.kill()
        usage = run.wait()
    assert usage is not None
    assert usage.exit == -9
    assert usage.peak_rss_mb > 0
    sleeper = int(grandchild.read_text())
    for _ in range(1000):
        if _gone(sleeper):
            break
        time.sleep(0.01)
    assert _gone(sleeper)


def test_a_command_that_cannot_start_is_an_error() -> None:
    """A missing program is reported as an error, not as figures."""
    with (
        measured_child.Measured([str(Path("/nonexistent/program"))]) as run,
        pytest.raises(RuntimeError, match="cannot start"),
    ):
        run.wait()
