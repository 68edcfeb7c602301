"""SensitClient against small scripted aiohttp.web servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import gzip
import itertools
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from harvester import __version__
from harvester.api.client import ClientSettings, SensitClient
from harvester.config import resolve_config
from harvester.errors import (
    AuthError,
    ConfigError,
    FatalRemoteError,
    HarvesterError,
    RateLimitedError,
    ServerError,
    ServerUnreachableError,
    ShapeError,
    TransportError,
)
from harvester.models import DayAvailability, Device

EMAIL = "ops@example.com"
PASSWORD = "pa55-Wörd-never-shown"
USER_ID = "65f0c0ffee0123456789abcd"
ROLE = "SystemAdministrator"
SPOD = Device("1041", "SPOD", "METEC 1041")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def jwt(payload: dict[str, Any]) -> str:
    """An unsigned-looking HS256 JWT: the client only decodes the payload."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


@dataclass
class FakeApi:
    """A scripted SENSIT Connect: counts sign-ins, records requests, rejects chosen tokens."""

    token_life_s: int = 28800
    signin_delay_s: float = 0.0
    reject_all_tokens: bool = False
    devices: list[Any] = field(
        default_factory=lambda: [
            {"_id": "a1", "uuid": "1041", "name": "METEC 1041", "type": "SPOD"},
            {"_id": "a2", "uuid": 1028, "type": "RAMP"},
            {"_id": "a3", "uuid": "9", "name": "odd", "type": "TOASTER"},
        ]
    )
    overrides: dict[str, Handler] = field(default_factory=dict)
    sign_ins: int = 0
    rejected: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str], dict[str, str], bytes]] = field(default_factory=list)
    serial: Iterator[int] = field(default_factory=itertools.count)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.path, dict(request.headers), dict(request.query), body))
        for suffix, handler in self.overrides.items():
            if request.path.endswith(suffix):
                return await handler(request)
        if request.path.endswith("/users/signin"):
            return await self.sign_in(body)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.reject_all_tokens or token in self.rejected or token not in self.issued:
            return web.json_response({"message": "jwt expired"}, status=401)
        if request.path.endswith("/clients/getDevicesFromDeviceTypeAndRole"):
            return web.json_response(self.devices)
        if request.path.endswith("DataAvailableDates"):
            return web.json_response(
                [
                    {
                        "_id": {"month": 2, "day": 5, "year": 2024},
                        "count": 7,
                        "date": "2024-02-05T23:59:00.000Z",
                    }
                ]
            )
        return web.Response(body=b'{"data": []}', content_type="application/json")

    async def sign_in(self, body: bytes) -> web.StreamResponse:
        credentials = orjson.loads(body)
        if credentials != {"email": EMAIL, "password": PASSWORD}:
            return web.json_response({"message": "Invalid email or password"}, status=401)
        await asyncio.sleep(self.signin_delay_s)
        self.sign_ins += 1
        now = int(dt.datetime.now(dt.UTC).timestamp())
        token = jwt(
            {
                "email": EMAIL,
                "role": ROLE,
                "iat": now,
                "exp": now + self.token_life_s,
                "n": next(self.serial),
            }
        )
        self.issued.append(token)
        user = {
            "id": USER_ID,
            "role": ROLE,
            "email": EMAIL,
            "displayName": "Ops",
            "status": "Active",
        }
        return web.json_response({"accessToken": token, "user": user, "message": "ok"})

    def data_requests(self) -> list[tuple[str, dict[str, str], dict[str, str], bytes]]:
        return [s for s in self.seen if not s[0].endswith("/users/signin")]


class Servers:
    """Starts apps on 127.0.0.1 at free ports and stops them (all of them at teardown)."""

    def __init__(self) -> None:
        self.runners: dict[str, web.AppRunner] = {}

    async def __call__(
        self, app: web.Application, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
        self.runners[url] = runner
        return url

    async def stop(self, url: str) -> None:
        await self.runners.pop(url).cleanup()


@pytest.fixture(autouse=True)
def _no_proxy_from_the_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts proxy variables; tests must not inherit the machine's."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def serve() -> AsyncIterator[Servers]:
    servers = Servers()
    yield servers
    for url in list(servers.runners):
        await servers.stop(url)


def settings(base_url: str, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {"base_url": base_url, "email": EMAIL, "password": PASSWORD}
    values.update({"connect_timeout_s": 2.0, "read_timeout_s": 2.0}, **overrides)
    return ClientSettings(**values)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def respond(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers, content_type=content_type)

    return handler


# -- sign-in and start-up ---------------------------------------------------------------------


async def test_devices_are_listed_with_role_user_and_identifying_headers(serve: Servers) -> None:
    """Devices map to models (uuid as str, missing name ""), unknown types are skipped with a
    warning, and the call carries Role/UserId from sign-in, Bearer token, User-Agent, Accept."""
    api = FakeApi()
    async with SensitClient(settings(await serve(api.app()))) as client:
        with capture_logs() as logs:
            devices = await client.list_devices("ALL")
    assert devices == [SPOD, Device("1028", "RAMP", "")]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["device_skipped"]
    _, headers, query, _ = api.data_requests()[0]
    assert query == {"DeviceType": "ALL", "Role": ROLE, "UserId": USER_ID}
    assert headers["Authorization"] == f"Bearer {api.issued[0]}"
    assert headers["User-Agent"] == f"sensit-harvester/{__version__}"
    assert headers["Accept"] == "application/json"
    assert client.stats.sign_ins == 1
    assert client.stats.requests == 2
    assert client.stats.by_status == {"200": 2}


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_refused_sign_in_is_one_clear_auth_error_and_never_retried(
    serve: Servers, status: int
) -> None:
    """A refused sign-in raises AuthError with the documented one-line hint, after one attempt."""
    api = FakeApi(overrides={"/users/signin": respond(status, b'{"message": "nope"}')})
    base = await serve(api.app())
    async with SensitClient(settings(base)) as client:
        with pytest.raises(AuthError) as caught:
            await client.list_devices()
    assert str(caught.value) == (
        f"sign-in refused for {EMAIL} at {base}: check --email / --password "
        "(or SENSIT_EMAIL / SENSIT_PASSWORD)"
    )
    assert len(api.seen) == 1


async def test_wrong_password_against_the_fake_is_refused(serve: Servers) -> None:
    """The fake's own credential check answers 401 and the client reports AuthError."""
    api = FakeApi()
    async with SensitClient(settings(await serve(api.app()), password="wrong")) as client:
        with pytest.raises(AuthError, match="sign-in refused"):
            await client.sign_in()
    assert api.sign_ins == 0


async def test_sign_in_answered_with_html_is_not_the_api(serve: Servers) -> None:
    """A 200 HTML page at the sign-in path means a wrong --base-url: ServerUnreachableError."""
    page = respond(200, b"<html><body>Welcome to nginx</body></html>", content_type="text/html")
    base = await serve(FakeApi(overrides={"/users/signin": page}).app())
    async with SensitClient(settings(base)) as client:
        with pytest.raises(ServerUnreachableError) as caught:
            await client.sign_in()
    assert str(caught.value).startswith(
        f"{base} did not answer like the SENSIT Connect API (got text/html"
    )
    assert "check --base-url" in str(caught.value)


async def test_sign_in_path_missing_is_not_the_api(serve: Servers) -> None:
    """A 404 for the sign-in path at start-up also points at --base-url."""
    base = await serve(FakeApi(overrides={"/users/signin": respond(404, b"Not Found")}).app())
    async with SensitClient(settings(base)) as client:
        with pytest.raises(
            ServerUnreachableError, match=r"HTTP 404 for /users/signin\): check --base-url"
        ):
            await client.sign_in()


async def test_closed_port_at_start_up_is_server_unreachable() -> None:
    """Nothing listening at the base URL gives the documented connection-refused line."""
    base = f"http://127.0.0.1:{closed_port()}"
    async with SensitClient(settings(base)) as client:
        with pytest.raises(ServerUnreachableError) as caught:
            await client.sign_in()
    assert str(caught.value) == (
        f"cannot connect to {base}: connection refused — "
        "is the server running and --base-url right?"
    )


async def test_unresolvable_host_at_start_up_is_server_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DNS failure on the first call names the host and --base-url (resolver faked locally)."""

    async def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
    async with SensitClient(settings("http://sensit.invalid:8080/api")) as client:
        with pytest.raises(ServerUnreachableError) as caught:
            await client.sign_in()
    assert str(caught.value).startswith(
        "cannot resolve host 'sensit.invalid' of http://sensit.invalid:8080/api: check --base-url"
    )


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (made with the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_untrusted_certificate_fails_clearly_and_ca_bundle_fixes_it(
    serve: Servers, self_signed: tuple[Path, Path]
) -> None:
    """TLS stays verified: a private CA fails with a --ca-bundle hint; passing it succeeds."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    api = FakeApi()
    base = await serve(api.app(), ssl_context=context)
    async with SensitClient(settings(base)) as client:
        with pytest.raises(ServerUnreachableError) as caught:
            await client.sign_in()
    assert str(caught.value).startswith(f"TLS certificate verification failed for {base}")
    assert "pass --ca-bundle" in str(caught.value)
    assert api.sign_ins == 0
    async with SensitClient(settings(base, ca_bundle=str(cert))) as client:
        assert await client.list_devices() == [SPOD, Device("1028", "RAMP", "")]


async def test_https_proxy_variables_from_the_environment_are_used(
    serve: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, requests for an unreachable origin go through the proxy."""
    api = FakeApi()
    proxy = await serve(api.app())
    monkeypatch.setenv("HTTP_PROXY", proxy)
    origin = f"http://127.0.0.1:{closed_port()}"
    async with SensitClient(settings(origin)) as client:
        assert await client.list_devices() == [SPOD, Device("1028", "RAMP", "")]
    assert api.sign_ins == 1


async def test_connection_lost_after_start_up_is_retryable(serve: Servers) -> None:
    """Once signed in, a refused connection is a TransportError, not a start-up failure."""
    base = await serve(FakeApi().app())
    async with SensitClient(settings(base)) as client:
        await client.sign_in()
        await serve.stop(base)
        with pytest.raises(TransportError, match="device list"):
            await client.list_devices()
    assert client.stats.transport_errors == 1


# -- tokens: single flight, proactive refresh, no storm ---------------------------------------


async def test_401_under_concurrency_triggers_exactly_one_sign_in(serve: Servers) -> None:
    """20 callers whose token is rejected share ONE re-sign-in, then all succeed with it."""
    api = FakeApi(signin_delay_s=0.05)
    async with SensitClient(settings(await serve(api.app()), concurrency=20)) as client:
        await client.sign_in()
        api.rejected.add(api.issued[0])
        results = await asyncio.gather(*(client.available_dates(SPOD) for _ in range(20)))
    assert api.sign_ins == 2
    assert client.stats.sign_ins == 2
    assert all(r == results[0] for r in results)
    rejected = [
        s for s in api.data_requests() if s[1]["Authorization"] == f"Bearer {api.issued[0]}"
    ]
    assert len(rejected) >= 2, "the callers did not overlap: the test proves nothing"
    assert client.stats.by_status["401"] == len(rejected)


async def test_token_near_exp_is_refreshed_before_the_call(serve: Servers) -> None:
    """With a token of 100 s life (margin capped at 20 s), a call at 85 s signs in again first
    and uses the new token; a call at 50 s does not."""
    now = [1000.0]
    api = FakeApi(token_life_s=100)
    base = await serve(api.app())
    async with SensitClient(settings(base), clock=lambda: now[0]) as client:
        await client.sign_in()
        now[0] += 50
        await client.available_dates(SPOD)
        assert api.sign_ins == 1
        now[0] += 35
        await client.available_dates(SPOD)
    assert api.sign_ins == 2
    assert api.data_requests()[-1][1]["Authorization"] == f"Bearer {api.issued[1]}"
    assert client.stats.by_status.get("401", 0) == 0


async def test_proactive_refresh_is_single_flight(serve: Servers) -> None:
    """Ten callers finding the token near its end cause one sign-in, not ten."""
    now = [0.0]
    api = FakeApi(token_life_s=100, signin_delay_s=0.05)
    async with SensitClient(settings(await serve(api.app())), clock=lambda: now[0]) as client:
        await client.sign_in()
        now[0] = 95
        await asyncio.gather(*(client.available_dates(SPOD) for _ in range(10)))
    assert api.sign_ins == 2


async def test_401_straight_after_a_fresh_sign_in_is_an_auth_error_without_storm(
    serve: Servers,
) -> None:
    """When even a fresh token is refused, every caller gets AuthError and sign-ins stay bounded."""
    api = FakeApi(reject_all_tokens=True, signin_delay_s=0.02)
    async with SensitClient(settings(await serve(api.app()))) as client:
        await client.sign_in()
        outcomes = await asyncio.gather(
            *(client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2)) for _ in range(10)),
            return_exceptions=True,
        )
    assert all(isinstance(o, AuthError) for o in outcomes)
    assert "refused a freshly issued token (HTTP 401)" in str(outcomes[0])
    assert api.sign_ins <= 2
    assert len(api.data_requests()) <= 20


# -- status translation -----------------------------------------------------------------------

T0 = dt.datetime(2024, 2, 5, 22, tzinfo=dt.UTC)


def records_path(kind: str = "SPOD") -> str:
    return f"/sensors-data/get{kind}DeviceLogForGivenHour"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({}, None),
        ({"Retry-After": "soon"}, None),
    ],
)
async def test_429_becomes_rate_limited_with_retry_after(
    serve: Servers, header: dict[str, str], expected: float | None
) -> None:
    """A 429 is RateLimitedError carrying Retry-After seconds, or None when absent or garbage."""
    api = FakeApi(overrides={records_path(): respond(429, b"slow down", header)})
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert caught.value.retry_after == expected
    assert client.stats.rate_limited == 1


async def test_429_with_http_date_retry_after(serve: Servers) -> None:
    """A Retry-After HTTP-date two minutes ahead becomes about 120 seconds."""
    when = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120), usegmt=True
    )
    api = FakeApi(overrides={records_path(): respond(429, b"", {"Retry-After": when})})
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert caught.value.retry_after is not None
    assert 100 <= caught.value.retry_after <= 121


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_html_becomes_server_error(serve: Servers, status: int) -> None:
    """A 5xx HTML page is ServerError with its status and a tag-free one-line excerpt."""
    page = (
        f"<html><head><title>{status} Bad Gateway</title></head>"
        f"<body><h1>{status}</h1>\n<p>upstream died</p></body></html>"
    )
    api = FakeApi(
        overrides={records_path(): respond(status, page.encode(), content_type="text/html")}
    )
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(ServerError) as caught:
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert caught.value.status == status
    assert "upstream died" in str(caught.value)
    assert "<" not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_reset_mid_body_is_transport_error(serve: Servers) -> None:
    """A server that promises a long body and drops the connection half-way: TransportError."""

    async def half_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Length": "100000", "Content-Type": "application/json"}
        )
        await response.prepare(request)
        await response.write(b'{"data": [' + b" " * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    api = FakeApi(overrides={records_path(): half_body})
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(TransportError, match="records of SPOD 1041"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert client.stats.transport_errors == 1


async def test_slow_server_beyond_read_timeout_is_transport_error(serve: Servers) -> None:
    """No bytes within read_timeout_s: TransportError naming a timeout."""

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.4)
        return web.Response(body=b'{"data": []}')

    api = FakeApi(overrides={records_path(): slow})
    async with SensitClient(settings(await serve(api.app()), read_timeout_s=0.05)) as client:
        await client.sign_in()
        with pytest.raises(TransportError, match="timed out"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))


async def test_trickling_body_beyond_read_timeout_is_transport_error(serve: Servers) -> None:
    """A body that keeps coming, a few bytes at a time, for longer than read_timeout_s in
    total is cut off with a TransportError even though no single read times out."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(20):
                await response.write(b" ")
                await asyncio.sleep(0.02)
        return response

    api = FakeApi(overrides={records_path(): trickle})
    async with SensitClient(settings(await serve(api.app()), read_timeout_s=0.1)) as client:
        await client.sign_in()
        with pytest.raises(TransportError, match="timed out"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b'[{"uuid": "1", "type": "SPOD"}',
        b'{"devices": []}',
    ],
)
async def test_malformed_device_list_is_shape_error(serve: Servers, body: bytes) -> None:
    """A 200 device list that is not a JSON array (HTML, cut short, an object): ShapeError."""
    api = FakeApi(overrides={"/clients/getDevicesFromDeviceTypeAndRole": respond(200, body)})
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(ShapeError, match="device list"):
            await client.list_devices()
    assert client.stats.shape_errors == 1


@pytest.mark.parametrize(
    "body",
    [
        b'["1041"]',
        b'[{"type": "SPOD", "name": "no uuid"}]',
        b'[{"uuid": null, "type": "SPOD"}]',
        b'[{"uuid": "1041"}]',
    ],
)
async def test_unusable_device_entries_are_skipped_not_an_error(
    serve: Servers, body: bytes
) -> None:
    """An array whose entries name no device we can ask for: no error, no device, nothing
    counted as a shape error (one bad entry must not fail the whole list)."""
    api = FakeApi(overrides={"/clients/getDevicesFromDeviceTypeAndRole": respond(200, body)})
    async with SensitClient(settings(await serve(api.app()))) as client:
        assert await client.list_devices() == []
    assert client.stats.shape_errors == 0


GOOD_DAY: dict[str, Any] = {
    "_id": {"year": 2024, "month": 2, "day": 5},
    "count": 1,
    "date": "2024-02-05T01:00:00Z",
}


def day_entry(**changes: Any) -> dict[str, Any]:
    entry = {**GOOD_DAY, **changes}
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[{",
        orjson.dumps(GOOD_DAY),
        orjson.dumps([day_entry(date=None)]),
        orjson.dumps([day_entry(_id={"year": 2024, "month": 2, "day": 30})]),
        orjson.dumps([day_entry(_id={"year": "2024", "month": 2, "day": 5})]),
        orjson.dumps([day_entry(_id={"year": 10**12, "month": 2, "day": 5})]),
        orjson.dumps([day_entry(_id="2024-02-05")]),
        orjson.dumps([day_entry(count="1")]),
        orjson.dumps([day_entry(count=-1)]),
        orjson.dumps([day_entry(count=True)]),
        orjson.dumps([day_entry(date="yesterday")]),
    ],
)
async def test_malformed_available_dates_is_shape_error(serve: Servers, body: bytes) -> None:
    """A 200 dates answer that is not the documented array of day objects: ShapeError."""
    api = FakeApi(overrides={"DataAvailableDates": respond(200, body)})
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(ShapeError, match="available dates of SPOD 1041"):
            await client.available_dates(SPOD)


async def test_available_dates_parse_days_counts_and_last_record(serve: Servers) -> None:
    """Entries become DayAvailability sorted by day; naive and offset timestamps end up UTC;
    the request names device, type and time zone on the per-type path."""
    body = orjson.dumps(
        [
            {
                "_id": {"month": 9, "day": 30, "year": 2023},
                "count": 3,
                "date": "2023-09-30T04:00:00-05:00",
            },
            {
                "_id": {"month": 9, "day": 29, "year": 2023},
                "count": 1440,
                "date": "2023-09-29 23:59:00",
            },
        ]
    )
    api = FakeApi(overrides={"/sensors-data/getRAMPDataAvailableDates": respond(200, body)})
    ramp = Device("1028", "RAMP", "")
    async with SensitClient(settings(await serve(api.app()))) as client:
        days = await client.available_dates(ramp, "America/Chicago")
    assert list(days) == [
        DayAvailability(
            dt.date(2023, 9, 29), 1440, dt.datetime(2023, 9, 29, 23, 59, tzinfo=dt.UTC)
        ),
        DayAvailability(dt.date(2023, 9, 30), 3, dt.datetime(2023, 9, 30, 9, tzinfo=dt.UTC)),
    ]
    path, _, _, sent = api.data_requests()[0]
    assert path == "/sensors-data/getRAMPDataAvailableDates"
    assert orjson.loads(sent) == {
        "DeviceId": "1028",
        "DeviceType": "RAMP",
        "Timezone": "America/Chicago",
    }


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_is_fatal_with_status_and_excerpt(serve: Servers, status: int) -> None:
    """A 4xx other than 401/429 is FatalRemoteError with its status and a short body excerpt."""
    api = FakeApi(
        overrides={
            records_path(): respond(
                status, b'{"message": "DeviceId is required"}' + b" " * 5000 + b"x" * 500
            )
        }
    )
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(FatalRemoteError) as caught:
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)
    assert "DeviceId is required" in str(caught.value)
    assert len(str(caught.value)) < 400


async def test_fetch_window_sends_utc_bounds_and_returns_the_raw_body(serve: Servers) -> None:
    """Bounds given in any zone are sent as UTC 'YYYY-MM-DD HH:MM:SS'; the body comes back
    byte for byte; the base URL's path prefix and the per-type path are kept."""
    raw = b'{"data": [{"_id": "x", "date": "2024-02-05T23:00:00.000Z", "temp": 1.5}]}  '
    api = FakeApi(overrides={records_path("FMD"): respond(200, raw)})
    chicago = dt.timezone(dt.timedelta(hours=-6))
    fmd = Device("7", "FMD", "")
    async with SensitClient(settings(await serve(api.app()) + "/api/v2/")) as client:
        body = await client.fetch_window(
            fmd,
            dt.datetime(2024, 2, 5, 16, tzinfo=chicago),
            dt.datetime(2024, 2, 5, 18, tzinfo=chicago),
        )
    assert body == raw
    path, headers, _, sent = api.data_requests()[0]
    assert path == "/api/v2" + records_path("FMD")
    assert api.seen[0][0] == "/api/v2/users/signin"
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(sent) == {
        "DeviceId": "7",
        "DeviceType": "FMD",
        "StartDate": "2024-02-05 22:00:00",
        "EndDate": "2024-02-06 00:00:00",
    }
    assert client.stats.bytes_received >= len(raw)


async def test_records_answer_other_than_200_is_not_returned(serve: Servers) -> None:
    """A 204 for records is a ShapeError (retryable), never an empty body passed on as 'no data'."""
    api = FakeApi(overrides={records_path(): respond(204)})
    async with SensitClient(settings(await serve(api.app()))) as client:
        with pytest.raises(ShapeError, match="HTTP 204"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))


# -- secrets ----------------------------------------------------------------------------------


async def test_secrets_never_appear_in_errors_logs_or_reprs(serve: Servers) -> None:
    """Password and token stay out of reprs, log events and error messages, even when the
    server echoes our request body and headers back in its error pages."""

    async def echo(request: web.Request) -> web.StreamResponse:
        echoed = (await request.read()) + request.headers.get("Authorization", "").encode()
        return web.Response(status=422, body=echoed)

    async def echo_sign_in(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, body=await request.read())

    api = FakeApi(overrides={records_path(): echo, "DataAvailableDates": respond(500, b"")})
    base = await serve(api.app())
    errors: list[HarvesterError] = []
    with capture_logs() as logs:
        async with SensitClient(settings(base)) as client:
            await client.list_devices()
            for call in (
                lambda: client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2)),
                lambda: client.available_dates(SPOD),
            ):
                try:
                    await call()
                except HarvesterError as exc:
                    errors.append(exc)
            api.overrides["/users/signin"] = echo_sign_in
            try:
                await client.sign_in()
            except HarvesterError as exc:
                errors.append(exc)
            token = api.issued[0]
            texts = [str(e) for e in errors] + [
                repr(client),
                repr(client.settings),
                repr(client.stats),
            ]
    texts += [repr(event) for event in logs]
    assert len(errors) == 3
    assert any("***" in t for t in texts), "the echo never reached an error message"
    for text in texts:
        assert PASSWORD not in text
        assert token not in text
    assert "password" not in repr(client.settings)


# -- response size cap ------------------------------------------------------------------------

CAP = 64 * 1024


def streamed(parts: list[bytes], then_hang: bool = False, length: int | None = None) -> Handler:
    """A 200 written part by part (chunked, or with a ``length`` it may not keep), then
    optionally held open without an end, as a server that never stops sending would."""

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if length is not None:
            headers["Content-Length"] = str(length)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for part in parts:
                await response.write(part)
            if then_hang:
                await asyncio.sleep(30)
        return response

    return handler


async def test_records_body_beyond_the_cap_is_refused_as_soon_as_it_passes_it(
    serve: Servers,
) -> None:
    """A records body that keeps coming past the cap (and would never end) is a ShapeError
    naming the device and the window's start, raised at the cap, not at the read timeout,
    with no more than the cap kept."""
    body = [b'{"data": [' + b" " * 8192] + [b" " * 8192] * 16
    api = FakeApi(overrides={records_path(): streamed(body, then_hang=True)})
    async with SensitClient(settings(await serve(api.app()), max_response_bytes=CAP)) as client:
        await client.sign_in()
        with pytest.raises(ShapeError, match="records of SPOD 1041 2024-02-05 22:00:00") as caught:
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert "0.0625 MiB cap (--max-response-mb)" in str(caught.value)
    assert client.stats.shape_errors == 1
    assert client.stats.bytes_received - len(api.issued[0]) < CAP + 1024


async def test_announced_length_beyond_the_cap_is_refused_before_reading(serve: Servers) -> None:
    """A Content-Length beyond the cap is refused at once, though the body never arrives."""
    api = FakeApi(overrides={records_path(): streamed([b"{"], then_hang=True, length=CAP + 1)})
    async with SensitClient(settings(await serve(api.app()), max_response_bytes=CAP)) as client:
        await client.sign_in()
        with pytest.raises(ShapeError, match="records of SPOD 1041 2024-02-05 22:00:00"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))


async def test_compressed_body_is_capped_as_it_inflates(serve: Servers) -> None:
    """A small gzip body that inflates far beyond the cap (a zip bomb) is refused; what is
    kept stays under the cap."""
    bomb = gzip.compress(b'{"data": [' + b" " * (64 * CAP) + b"]}")
    assert len(bomb) < CAP
    headers = {"Content-Encoding": "gzip"}
    api = FakeApi(overrides={records_path(): respond(200, bomb, headers)})
    async with SensitClient(settings(await serve(api.app()), max_response_bytes=CAP)) as client:
        await client.sign_in()
        received = client.stats.bytes_received
        with pytest.raises(ShapeError, match="cap"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert client.stats.bytes_received - received <= CAP


async def test_body_of_exactly_the_cap_is_read_whole(serve: Servers) -> None:
    """The cap is inclusive: a body of exactly that many bytes is returned byte for byte."""
    body = b'{"data": []' + b" " * (CAP - 12) + b"}"
    assert len(body) == CAP
    api = FakeApi(overrides={records_path(): streamed([body[:1000], body[1000:]])})
    async with SensitClient(settings(await serve(api.app()), max_response_bytes=CAP)) as client:
        assert await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2)) == body


@pytest.mark.parametrize(
    ("route", "call", "what"),
    [
        ("/users/signin", "sign_in", "sign-in"),
        ("/clients/getDevicesFromDeviceTypeAndRole", "list_devices", "device list"),
        ("DataAvailableDates", "available_dates", "available dates of SPOD 1041"),
    ],
)
async def test_every_reply_is_capped(serve: Servers, route: str, call: str, what: str) -> None:
    """Sign-in, device list and available dates are capped as records are: a body beyond
    the cap is a ShapeError naming the call."""
    api = FakeApi(overrides={route: respond(200, b"[" + b" " * CAP + b"]")})
    async with SensitClient(settings(await serve(api.app()), max_response_bytes=CAP)) as client:
        method = getattr(client, call)
        with pytest.raises(ShapeError, match=what):
            await (method(SPOD) if call == "available_dates" else method())


async def test_failure_beyond_the_cap_keeps_its_status(serve: Servers) -> None:
    """A 503 or a 429 with a huge page is still a ServerError or RateLimitedError (its
    excerpt cut from the part read), not a shape error."""
    page = b"<html>" + b"down " * CAP + b"</html>"
    api = FakeApi(overrides={records_path(): respond(503, page, content_type="text/html")})
    async with SensitClient(settings(await serve(api.app()), max_response_bytes=CAP)) as client:
        with pytest.raises(ServerError, match="HTTP 503: down down"):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
        api.overrides[records_path()] = respond(429, page, {"Retry-After": "3"})
        with pytest.raises(RateLimitedError):
            await client.fetch_window(SPOD, T0, T0 + dt.timedelta(hours=2))
    assert client.stats.shape_errors == 0


def test_max_response_mb_reaches_the_client_settings() -> None:
    """``--max-response-mb`` (or SENSIT_MAX_RESPONSE_MB) sets the client's cap in MiB; the
    default is 32 MiB; zero is a configuration error naming the option."""
    flags = {"email": EMAIL, "password": PASSWORD}
    assert ClientSettings.from_config(resolve_config(flags, {})).max_response_bytes == 32 << 20
    config = resolve_config({**flags, "max_response_mb": "3"}, {})
    assert ClientSettings.from_config(config).max_response_bytes == 3 << 20
    config = resolve_config(flags, {"SENSIT_MAX_RESPONSE_MB": "5"})
    assert ClientSettings.from_config(config).max_response_bytes == 5 << 20
    with pytest.raises(ConfigError, match="--max-response-mb: must be at least 1"):
        resolve_config({**flags, "max_response_mb": "0"}, {})
