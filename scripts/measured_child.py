"""Run a command whose peak RSS and CPU time are its own, through a small launcher process.

On Linux a process's ``ru_maxrss`` includes the peak RSS of the memory it was exec'ed from:
``exec`` records the replaced memory's high-water mark in the process's own maximum, and a
child started with fork, vfork or ``posix_spawn`` (``subprocess``) execs from its parent's
memory (a copy, or the very same). A bench process of several GB thus reports its own peak as
the peak of every command it starts, through ``os.wait4`` and the command's own ``getrusage``
alike.

So a measured command is started by this file run as a launcher (``python -I -S``, ~10 MB),
which ``posix_spawn``s the command (the command execs from the launcher's small memory), then

- forwards SIGINT, SIGTERM and SIGHUP to the command, and kills it (SIGKILL) on SIGUSR1;
- reaps it with ``os.wait4`` and writes its exit status, CPU seconds and peak RSS as JSON to
  the path it is given (the command's and its own reaped children's, as ``wait4`` counts);
- exits with the command's exit code (128 + N when signal N ended it).

The command's stdin, stdout and stderr are the launcher's. The launcher leads a session (so a
process group) of its own, the command and what it starts in that group: ``Measured`` kills
whatever is left of the group once the launcher has ended, or the whole group when its caller
gives up (an exception, ``close``), so a command cannot outlive its measurement.

    python -I -S scripts/measured_child.py RESULT.json -- COMMAND [ARG ...]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, NamedTuple

LAUNCHER = os.path.abspath(__file__)
#: Signals the launcher passes on to the command as they are.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The signal asking the launcher to kill the command (SIGKILL), its figures still reported.
KILL = signal.SIGUSR1
#: How often ``Measured.wait`` with a limit looks for the launcher's end.
POLL_S = 0.05
#: How often a signal waits for the launcher to be ready to pass it on (its first few ms).
START_POLL_S = 0.005


class Usage(NamedTuple):
    """A measured command's outcome: exit code as ``subprocess`` gives it (-N: ended by signal
    N), user + system CPU seconds and peak RSS in KiB (``ru_maxrss``), its reaped children's
    included as ``os.wait4`` counts them."""

    exit: int
    cpu_s: float
    peak_rss_kb: int

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kb / 1024


class Measured:
    """``argv`` started through the launcher; ``popen`` keywords (stdout, stderr, env, cwd...)
    apply to the launcher, whose stdin, stdout and stderr the command shares.

    ``poll`` and ``wait`` give the command's ``Usage`` once the launcher has ended; ``interrupt``
    and ``kill`` reach the command through the launcher. Use it as a context manager: leaving
    the block kills what is still running of the command's process group."""

    def __init__(self, argv: list[str], **popen: Any) -> None:
        import subprocess
        import tempfile

        if "start_new_session" in popen or "process_group" in popen:
            raise ValueError("the launcher leads a session of its own")
        self._folder = tempfile.mkdtemp(prefix="measured-")
        self._result = os.path.join(self._folder, "usage.json")
        self.usage: Usage | None = None
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER, self._result, "--", *argv],
                start_new_session=True,
                **popen,
            )
        except BaseException:
            os.rmdir(self._folder)
            raise

    def __enter__(self) -> Measured:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        """The launcher's pid, also its process group's id."""
        return self.process.pid

    def poll(self) -> Usage | None:
        """The command's usage once the launcher has ended, else None (without waiting)."""
        return self._ended(block=False)

    def wait(self, timeout_s: float | None = None) -> Usage | None:
        """The command's usage once the launcher has ended; None if still running after
        ``timeout_s`` seconds."""
        if timeout_s is None:
            return self._ended(block=True)
        deadline = time.monotonic() + timeout_s
        while (usage := self._ended(block=False)) is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        return usage

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Send the command ``signum`` (one of ``FORWARDED``) through the launcher."""
        if signum not in FORWARDED:
            raise ValueError(f"the launcher forwards {FORWARDED}, not {signum}")
        self._signal(signum)

    def kill(self) -> None:
        """Have the launcher kill the command (SIGKILL) and report its figures."""
        self._signal(KILL)

    def close(self) -> None:
        """Kill what is left of the launcher's process group, reap the launcher, drop its
        files (the usage read so far stays in ``usage``)."""
        import shutil

        try:
            if self.process.returncode is None:
                self._kill_group()
                self.process.wait()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _signal(self, signum: int) -> None:
        # The launcher's handlers are in place once it has written its start file: a signal
        # sent earlier would end the launcher (default action) and orphan the command.
        started = self._result + ".started"
        while not os.path.exists(started):
            if self._ended(block=False) is not None:
                return
            time.sleep(START_POLL_S)
        if self.process.returncode is None:
            os.kill(self.process.pid, signum)

    def _ended(self, *, block: bool) -> Usage | None:
        if self.usage is not None:
            return self.usage
        flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
        if self.process.returncode is None and os.waitid(os.P_PID, self.pid, flags) is None:
            return None
        # The launcher is a zombie: its pid, the group's id, cannot be taken by another process
        # until it is reaped; whatever the command left running in the group goes first.
        self._kill_group()
        self.process.wait()
        try:
            with open(self._result) as file:
                figures = json.load(file)
        except FileNotFoundError:
            raise RuntimeError(
                f"measured_child: the launcher ended ({self.process.returncode}) without"
                " reporting the command's usage"
            ) from None
        if "error" in figures:
            raise RuntimeError(f"measured_child: {figures['error']}")
        self.usage = Usage(figures["exit"], figures["cpu_s"], figures["peak_rss_kb"])
        return self.usage

    def _kill_group(self) -> None:
        import contextlib

        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.pid, signal.SIGKILL)


def _write(path: str, figures: dict[str, Any]) -> None:
    partial = path + ".partial"
    with open(partial, "w") as file:
        json.dump(figures, file)
    os.replace(partial, path)


def launch(result: str, argv: list[str]) -> int:
    """The launcher: run ``argv``, pass signals on, write its usage to ``result``."""
    child: int | None = None
    ended = False
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        wanted = signal.SIGKILL if signum == KILL else signum
        if ended:
            return
        if child is None:
            pending.append(wanted)
            return
        os.kill(child, wanted)  # a zombie until reaped below: never another process

    for signum in (*FORWARDED, KILL):
        signal.signal(signum, forward)
    try:
        child = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            # Python ignores SIGPIPE and SIGXFSZ; caught signals are reset by exec anyway.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED, KILL),
        )
    except OSError as error:
        _write(result, {"error": f"cannot start {argv[0]!r}: {error}"})
        return 127
    for queued in pending:
        os.kill(child, queued)
    with open(result + ".started", "w") as file:
        file.write(str(child))
    os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    ended = True
    _, status, usage = os.wait4(child, 0)
    code = os.waitstatus_to_exitcode(status)
    figures = {
        "pid": child,
        "exit": code,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss,
    }
    _write(result, figures)
    return code if code >= 0 else 128 - code


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    return launch(args[0], args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
