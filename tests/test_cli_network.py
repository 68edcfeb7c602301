"""The real-network options as a user meets them on the command line.

The simulator app is served over TLS with a throw-away certificate on 127.0.0.1; the CLI runs
in a worker thread (it owns its event loop) while the test's loop serves. Name resolution
failures are faked by replacing ``socket.getaddrinfo``: no query leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from harvester.cli import main
from harvester.simulator.app import build_app
from harvester.simulator.options import SimulatorOptions


@pytest.fixture(autouse=True)
def _no_proxy_from_the_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts proxy variables; tests must not inherit the machine's."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_simulator(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    """The simulator over HTTPS; yields its base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    app = build_app(SimulatorOptions(devices=3, days=2, cadence_s=3600))
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def _cli(*argv: str) -> tuple[int, str, str]:
    """``harvester ARGV`` in a worker thread; (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            return main(list(argv))

    saved = structlog.get_config()  # main() configures logging globally: restore it after
    try:
        code = await asyncio.to_thread(call)
    finally:
        structlog.configure(**saved)
    return code, stdout.getvalue(), stderr.getvalue()


def _plan_args(base_url: str, out: Path) -> list[str]:
    return ["plan", "--base-url", base_url, "--email", "demo@example.com", "--password", "demo",
            "--out", str(out), "-q"]  # fmt: skip


async def test_untrusted_certificate_is_one_line_and_ca_bundle_fixes_it(
    tls_simulator: str, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """Without the CA: exit 1 and one line naming --ca-bundle; with --ca-bundle: the plan."""
    code, stdout, stderr = await _cli(*_plan_args(tls_simulator, tmp_path / "out"))
    assert code == 1
    assert stderr.count("\n") == 1
    assert stderr.startswith(
        f"harvester: error: TLS certificate verification failed for {tls_simulator}"
    )
    assert "--ca-bundle" in stderr
    assert stdout == ""
    cert, _ = certificate
    args = [*_plan_args(tls_simulator, tmp_path / "out"), "--ca-bundle", str(cert)]
    code, stdout, stderr = await _cli(*args)
    assert code == 0, stderr
    assert stdout.splitlines()[0].split() == ["devices", "3"]


async def test_ca_bundle_from_the_environment_reaches_the_client(
    tls_simulator: str,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SENSIT_CA_BUNDLE works like --ca-bundle."""
    monkeypatch.setenv("SENSIT_CA_BUNDLE", str(certificate[0]))
    code, _, stderr = await _cli(*_plan_args(tls_simulator, tmp_path / "out"))
    assert code == 0, stderr


async def test_unreadable_ca_bundle_is_a_configuration_error(
    tls_simulator: str, tmp_path: Path
) -> None:
    """A --ca-bundle that is not a PEM file: exit 2, one line naming it."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    args = [*_plan_args(tls_simulator, tmp_path / "out"), "--ca-bundle", str(bogus)]
    code, _, stderr = await _cli(*args)
    assert code == 2
    assert stderr.count("\n") == 1
    assert f"cannot load --ca-bundle {bogus}" in stderr


async def test_unresolvable_host_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DNS failure: exit 1 and one line naming the host and --base-url."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "sensit.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    code, _, stderr = await _cli(*_plan_args("https://sensit.invalid", tmp_path / "out"))
    assert code == 1
    assert stderr == (
        "harvester: error: cannot resolve host 'sensit.invalid' of https://sensit.invalid: "
        "check --base-url (and your DNS or proxy settings)\n"
    )


async def test_https_proxy_from_the_environment_tunnels_verified_tls(
    tls_simulator: str,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY is honoured: requests go through a CONNECT tunnel, TLS still verified."""
    tunnels: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        assert method == "CONNECT"
        tunnels.append(target)
        port = int(target.rsplit(":", 1)[1])
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
    try:
        args = [*_plan_args(tls_simulator, tmp_path / "out"), "--ca-bundle", str(certificate[0])]
        code, _, stderr = await _cli(*args)
    finally:
        proxy.close()
    assert code == 0, stderr
    assert tunnels
    assert set(tunnels) == {tls_simulator.removeprefix("https://")}
