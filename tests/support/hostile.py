"""A look-alike SENSIT Connect server that answers ONE chosen call with a hostile reply.

:class:`HostileServer` serves the project's simulator app (``harvester/simulator/app.py``) in a
thread of its own (its own event loop on 127.0.0.1), with one extra middleware: when the
current :class:`Rule` matches a request (the sign-in, the device list, the dates of one
device, or the records of one window of one device), the simulator's healthy answer is handed
to the rule, which returns the reply actually sent. Everything else stays healthy. The
harvester under test runs in the test's own thread (``tests/support/inproc.py``) or as a
subprocess (:func:`harvest_subprocess`, for bodies that could crash the process).

``aliases`` lets a device-list rule rename a device (``1002`` → ``a/b``) while the data routes
still serve the renamed device its original data; ``tokens`` lets a sign-in rule hand out an
opaque token that the server then accepts as the real one.

The rest: the expected records by device (the plain sequential client), the archive read back
file by file (partition values decoded as Hive does), and a snapshot of a folder tree.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from aiohttp import web
from multidict import CIMultiDict

from harvester.simulator.app import STATE, build_app
from harvester.simulator.options import SimulatorOptions
from tests.support import plain_client

EMAIL, PASSWORD = "demo@example.com", "demo"

#: Which call a rule replaces; the request path tells them apart.
ROUTES = ("signin", "devices", "dates", "records")


@dataclass(frozen=True)
class Reply:
    """What the hostile server sends instead of the healthy answer."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    def response(self) -> web.Response:
        return web.Response(body=self.body, status=self.status, headers=self.headers)


def json_reply(value: Any) -> Reply:
    """A 200 JSON answer of ``value`` (standard library JSON: NaN stays out unless asked)."""
    return Reply(json.dumps(value).encode())


@dataclass(frozen=True)
class Rule:
    """Replace the answer of one call: ``route`` (one of ``ROUTES``), for data routes the
    device ``uuid`` and for records the window's ``start`` (``"YYYY-MM-DD HH:MM:SS"``).

    ``make`` receives the simulator's healthy body and returns the reply to send.
    """

    route: str
    make: Callable[[bytes], Reply]
    uuid: str | None = None
    start: str | None = None


def route_of(path: str) -> str | None:
    if path == "/users/signin":
        return "signin"
    if path.endswith("getDevicesFromDeviceTypeAndRole"):
        return "devices"
    if path.endswith("DataAvailableDates"):
        return "dates"
    if "DeviceLog" in path:
        return "records"
    return None


_SERVER = web.AppKey("hostile_server", object)


class HostileServer:
    """The simulator with one call replaced; ``with HostileServer(options) as server``."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.rule: Rule | None = None
        self.hits = 0
        self.aliases: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # -- the rule of the moment --------------------------------------------------------------

    def arm(
        self,
        rule: Rule | None,
        aliases: dict[str, str] | None = None,
    ) -> None:
        """Answer with ``rule`` from now on (None: healthy); counts hits from zero."""
        self.rule, self.hits = rule, 0
        self.aliases = dict(aliases or {})
        self.tokens = {}

    def disarm(self) -> None:
        self.arm(None)

    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        real = self.tokens.get(bearer)
        if real is not None:
            headers = CIMultiDict(request.headers)
            headers["Authorization"] = f"Bearer {real}"
            request = request.clone(headers=headers)
        rule = self.rule
        if rule is None or route_of(request.path) != rule.route:
            response: web.StreamResponse = await handler(request)
            return response
        if rule.route in ("dates", "records"):
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = {}
            if not isinstance(body, dict) or body.get("DeviceId") != rule.uuid:
                return await handler(request)  # type: ignore[no-any-return]
            if rule.start is not None and body.get("StartDate") != rule.start:
                return await handler(request)  # type: ignore[no-any-return]
        healthy = await handler(request)
        if not isinstance(healthy, web.Response) or healthy.status != 200:
            return healthy  # type: ignore[no-any-return]
        self.hits += 1
        assert isinstance(healthy.body, bytes)
        return rule.make(healthy.body).response()

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> HostileServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.url = future.result(timeout=30)
        return self

    async def _start(self) -> str:
        app = build_app(self.options)
        data = app[STATE].data
        find = data.find

        def find_aliased(uuid: str, device_type: str) -> Any:
            return find(self.aliases.get(uuid, uuid), device_type)

        data.find = find_aliased  # type: ignore[method-assign]

        @web.middleware
        async def hostile(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self._middleware(request, handler)

        # Inside the simulator's own middleware, so its stats count what was really sent.
        app.middlewares.append(hostile)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            future.result(timeout=30)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- what a healthy server holds ---------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """The healthy server's devices (as listed) and every record of each, by ``_id``."""

    devices: list[dict[str, Any]]
    records: dict[str, dict[str, dict[str, Any]]]

    def device(self, uuid: str) -> dict[str, Any]:
        return next(d for d in self.devices if d["uuid"] == uuid)


def collect_fleet(url: str) -> Fleet:
    """Every record of every device, read by the plain sequential client."""
    login = plain_client.sign_in(url, EMAIL, PASSWORD)
    token = login["accessToken"]
    devices = plain_client.list_devices(url, login)
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for device in devices:
        by_id: dict[str, dict[str, Any]] = {}
        for entry in plain_client.available_dates(url, token, device["uuid"], device["type"]):
            day = plain_client.day_of(entry)
            by_id.update(plain_client.collect_device_day(url, token, device, day))
        records[device["uuid"]] = by_id
    return Fleet(devices, records)


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the archive, read back --------------------------------------------------------------------


@dataclass
class Archive:
    """The archive's rows by device id (partition value decoded), and the files whose path
    does not follow ``device_type=T/device_id=U/day=YYYY-MM-DD/NAME.parquet``."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    misplaced: list[str] = field(default_factory=list)


def read_archive(out: Path) -> Archive:
    archive = Archive()
    if not out.exists():
        return archive
    for path in sorted(out.rglob("*.parquet")):
        relative = path.relative_to(out).parts
        if relative[0].startswith("_"):
            continue
        keys = [part.partition("=") for part in relative[:-1]]
        names = [key for key, sep, _ in keys if sep]
        if len(relative) != 4 or names != ["device_type", "device_id", "day"]:
            archive.misplaced.append("/".join(relative))
            continue
        device = urllib.parse.unquote(keys[1][2], errors="strict")
        archive.rows.setdefault(device, []).extend(pq.read_table(path).to_pylist())
    return archive


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` except those under ``skip``: size and mtime of each file
    (a folder's own mtime changes when ``skip`` is made in it: folders count by name)."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == skip or skip in here.parents:
            dirs[:] = []
            continue
        for name in [*dirs, *files]:
            path = here / name
            if path == skip:
                continue
            info = path.lstat()
            is_dir = name in dirs and not path.is_symlink()
            shown = (0, 0) if is_dir else (info.st_size, info.st_mtime_ns)
            found[str(path.relative_to(root))] = shown
    return found


# -- the harvester as a subprocess -------------------------------------------------------------


#: The console script, then its peak resident memory (VmHWM: this process's own, from exec on;
#: rusage would count the parent's pages at fork time) as the last line of stderr.
_CHILD = """
import atexit, sys
def peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\nhostile-peak-rss-kib {kib}\\n")
atexit.register(peak)
from harvester.entry import main
raise SystemExit(main())
"""


def harvest_subprocess(
    url: str, out: Path, *extra: str, timeout_s: float = 60.0
) -> tuple[int, str, str, int]:
    """``harvester run`` in a child process: (exit code, stdout, stderr, peak RSS in MiB;
    0 when the child died before telling it).

    A child killed by a signal has a negative code (``-11`` for SIGSEGV); one that outlives
    ``timeout_s`` is killed and reported with code ``-9999``.
    """
    argv = [sys.executable, "-c", _CHILD, "run", "--base-url", url, "--email", EMAIL]
    argv += ["--password", PASSWORD, "--out", str(out), "--log-format", "json", "--rps", "500"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen([*argv, *extra], stdout=stdout, stderr=stderr, env=env)
        hung = threading.Event()

        def kill() -> None:
            hung.set()
            child.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            child.wait()
        finally:
            timer.cancel()
        stdout.seek(0)
        stderr.seek(0)
        code = -9999 if hung.is_set() else child.returncode
        printed = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
    found = re.search(r"\nhostile-peak-rss-kib (\d+)\n$", err)
    if found is None:
        return code, printed, err, 0
    return code, printed, err[: found.start()], int(found.group(1)) // 1024
