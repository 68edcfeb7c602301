"""``harvester simulate`` as a subprocess for tests: ``with SimulatorProcess(seed=3) as sim``."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

_URL = re.compile(r"http://[\w.\-]+:\d+")


class SimulatorProcess:
    """A simulator subprocess; keyword options become flags (``cadence_s=1`` → ``--cadence-s 1``).

    ``start`` blocks until the process prints its URL (or fails after ``timeout_s``).
    """

    def __init__(self, *args: str, timeout_s: float = 15.0, **options: Any) -> None:
        flags = [str(arg) for arg in args]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, list | tuple):
                value = ",".join(str(item) for item in value)
            flags += [flag, str(value)]
        self.command = [sys.executable, "-m", "harvester", "simulate", "--port", "0", *flags]
        self.timeout_s = timeout_s
        self.url = ""
        self.first_line = ""
        self._process: subprocess.Popen[str] | None = None
        # A file, not a pipe: nobody reads stderr while the simulator runs.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- closed in stop()

    def start(self) -> SimulatorProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        stdout = self._process.stdout
        assert stdout is not None  # PIPE was requested

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=self.timeout_s)
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"simulator printed no URL within {self.timeout_s} s") from None
            if not line:
                self._process.wait(timeout=5)
                raise RuntimeError(f"simulator exited before listening: {self.stderr_text()}")
            found = _URL.search(line)
            if found:
                self.first_line, self.url = line.strip(), found.group(0)
                return self

    def stderr_text(self) -> str:
        """What the process wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().strip()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """``GET /__sim/stats``."""
        result: dict[str, Any] = self._call("GET", "/__sim/stats")
        return result

    def set_clock(self, iso: str) -> None:
        """Move the simulated present (``POST /__sim/clock``)."""
        self._call("POST", "/__sim/clock", {"now": iso})

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM the process and wait for it; returns its exit code."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()
        return process.returncode

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


#: The ``simulator`` fixture: ``simulator(seed=3, days=2)`` starts a simulator process.
SimFactory = Callable[..., SimulatorProcess]
