"""The one aiohttp boundary: SENSIT Connect calls in, project errors and plain values out.

Every aiohttp, OS and timeout exception, and every HTTP status other than success, becomes a
class of :mod:`harvester.errors` here (:mod:`.client_replies` says what a reply or a failure
means, :mod:`.client_network` sets up proxy and TLS) and nowhere else. Sign-in is single flight:
a 401 or a token near its ``exp`` makes exactly one caller sign in again while the others wait
for it. The password and the token never enter an exception message, a log event or a ``repr``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

import aiohttp
import orjson
import structlog
import yarl

from harvester import __version__
from harvester.api.network import env_proxy, read_capped, ssl_context
from harvester.api.replies import (
    Reply,
    available_days,
    device_list,
    sign_in_answer,
    sign_in_refusal,
    status_error,
    transport_error,
)
from harvester.api.wire import jwt_claims, number
from harvester.config import DEFAULT_MAX_RESPONSE_MB, HarvestConfig, require_credentials
from harvester.errors import (
    AuthError,
    RateLimitedError,
    RemoteError,
    ServerError,
    ServerUnreachableError,
    ShapeError,
)
from harvester.models import Device, DeviceDays
from harvester.plan.windows import format_api_time

log = structlog.get_logger(__name__)

USER_AGENT: Final = f"sensit-harvester/{__version__}"
#: The refresh margin never exceeds this share of a token's life, so short-lived tokens
#: (minutes, in tests seconds) are still used for most of their life.
_MAX_MARGIN_SHARE: Final = 0.2
_Decoded = TypeVar("_Decoded")


@dataclass(frozen=True)
class ClientSettings:
    """Where and how to reach SENSIT Connect. ``password`` is kept out of ``repr``.

    Made from a ``HarvestConfig`` by ``from_config``; the values are not checked again here:
    ``harvester.config`` validates every option once, naming the flag a user would fix.
    """

    base_url: str
    email: str
    password: str = field(repr=False)
    concurrency: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    signin_path: str = "/users/signin"
    devices_path: str = "/clients/getDevicesFromDeviceTypeAndRole"
    dates_path: str = "/sensors-data/get{type}DataAvailableDates"
    records_path: str = "/sensors-data/get{type}DeviceLogForGivenHour"
    ca_bundle: str | None = None
    refresh_margin_s: float = 300.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_MB << 20

    @classmethod
    def from_config(cls, config: HarvestConfig) -> ClientSettings:
        """The client's settings of a validated configuration (``ConfigError`` without
        credentials)."""
        email, password = require_credentials(config)
        return cls(
            base_url=config.base_url,
            email=email,
            password=password,
            concurrency=config.concurrency,
            connect_timeout_s=config.connect_timeout_s,
            read_timeout_s=config.read_timeout_s,
            signin_path=config.signin_path,
            devices_path=config.devices_path,
            dates_path=config.dates_path,
            records_path=config.records_path,
            ca_bundle=str(config.ca_bundle) if config.ca_bundle else None,
            max_response_bytes=config.max_response_mb << 20,
        )

    @property
    def shown_url(self) -> str:
        """The base URL as error messages show it: without any user:password part."""
        return str(yarl.URL(self.base_url).with_user(None)).rstrip("/")


@dataclass
class ClientStats:
    """What the client did, for the run summary. ``requests`` includes sign-ins."""

    requests: int = 0
    sign_ins: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    shape_errors: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "sign_ins": self.sign_ins,
            "by_status": dict(sorted(self.by_status.items())),
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "transport_errors": self.transport_errors,
            "shape_errors": self.shape_errors,
            "bytes_received": self.bytes_received,
        }


@dataclass(frozen=True)
class RawReply:
    """Every part of an answer to ``SensitClient.exchange``: the status, the headers in order
    (repeats kept), the body decoded from any Content-Encoding, and the seconds from sending
    to the last byte."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    elapsed_s: float


@dataclass(frozen=True)
class _Auth:
    """One sign-in's result. ``refresh_at`` is on the client's monotonic clock."""

    token: str = field(repr=False)
    user_id: str
    role: str
    generation: int
    refresh_at: float | None


class SensitClient:
    """SENSIT Connect over one aiohttp session; use as ``async with SensitClient(s) as c``.

    ``clock`` (monotonic seconds) decides when a token is near its end; tests replace it.
    """

    def __init__(
        self, settings: ClientSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.stats = ClientStats()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._auth: _Auth | None = None
        self._auth_lock = asyncio.Lock()
        self._base = settings.base_url.rstrip("/")
        self._urls: dict[str, yarl.URL] = {}
        self._proxy: yarl.URL | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None

    def __repr__(self) -> str:
        return f"SensitClient(base_url={self.settings.shown_url!r}, email={self.settings.email!r})"

    async def __aenter__(self) -> SensitClient:
        # The proxy is looked up once: with trust_env aiohttp would read the environment and
        # ~/.netrc in a worker thread on every request (two thread hops per call).
        base = yarl.URL(self._base)
        self._proxy, self._proxy_auth = env_proxy(base)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.settings.concurrency, ssl=ssl_context(base, self.settings.ca_bundle)
            ),
            # Waiting for a free pooled connection is not a network fault: only the socket
            # connect and each socket read are bounded.
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=None,
                sock_connect=self.settings.connect_timeout_s,
                sock_read=self.settings.read_timeout_s,
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sign_in(self) -> None:
        """Sign in now (whatever the current token), e.g. at the start of a run."""
        async with self._auth_lock:
            await self._sign_in_locked()

    async def list_devices(self, device_type: str = "ALL") -> list[Device]:
        """Devices of ``device_type`` (ALL, FMD, SPOD, RAMP); unknown types are skipped."""
        auth = await self._current_auth()
        what = f"device list ({device_type})"
        params = {"DeviceType": device_type, "Role": auth.role, "UserId": auth.user_id}
        reply = await self._authorized("GET", self.settings.devices_path, what, params=params)
        return self._decoded(device_list, reply, what)

    async def available_dates(self, device: Device, timezone: str = "UTC") -> DeviceDays:
        """Days with data for ``device`` reckoned in ``timezone``, sorted by day."""
        what = f"available dates of {device.type} {device.uuid}"
        payload = {"DeviceId": device.uuid, "DeviceType": device.type, "Timezone": timezone}
        path = self.settings.dates_path.replace("{type}", device.type)
        reply = await self._authorized("POST", path, what, payload=payload)
        return self._decoded(available_days, reply, what)

    async def fetch_window(self, device: Device, start: dt.datetime, end: dt.datetime) -> bytes:
        """The raw body of one records call for ``[start, end]`` (sent as UTC; naive is UTC)."""
        start_s, end_s = format_api_time(start), format_api_time(end)
        what = f"records of {device.type} {device.uuid} {start_s}..{end_s}"
        payload = {
            "DeviceId": device.uuid,
            "DeviceType": device.type,
            "StartDate": start_s,
            "EndDate": end_s,
        }
        path = self.settings.records_path.replace("{type}", device.type)
        reply = await self._authorized("POST", path, what, payload=payload)
        if reply.status != 200:
            raise self._counted(status_error(reply, what, self._secrets()))
        return reply.body

    async def exchange(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        token: str | None = None,
    ) -> RawReply:
        """One request sent exactly as given (a non-empty ``body`` as JSON, ``token`` as the
        bearer) and all of its answer, with no sign-in, retry or decoding: for ``harvester
        probe``, which judges statuses, headers and shapes itself. A failure to connect or to
        read the answer raises as every call does; a body over ``--max-response-mb`` is a
        ``ShapeError``."""
        if self._session is None:
            raise RuntimeError("SensitClient used outside 'async with'")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body:
            headers["Content-Type"] = "application/json"
        what = f"{method} {path}"
        url = yarl.URL(self._base + (path if path.startswith("/") else "/" + path))
        loop = asyncio.get_running_loop()
        self.stats.requests += 1
        started = loop.time()
        try:
            async with self._session.request(
                method,
                url,
                params=list(query) or None,
                data=body or None,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            ) as response:
                async with asyncio.timeout(self.settings.read_timeout_s):
                    data, whole = await read_capped(response, self.settings.max_response_bytes)
                status, pairs = response.status, tuple(response.headers.items())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.stats.transport_errors += 1
            shown_url = self.settings.shown_url
            raise transport_error(exc, what, shown_url, signed_in=token is not None) from None
        self.stats.by_status[str(status)] += 1
        self.stats.bytes_received += len(data)
        if not whole:
            cap_mb = self.settings.max_response_bytes / 2**20
            raise self._counted(
                ShapeError(f"{what}: the response is larger than the {cap_mb:g} MiB cap")
            )
        return RawReply(status, pairs, data, loop.time() - started)

    # -- authentication -------------------------------------------------------------------

    async def _current_auth(self) -> _Auth:
        auth = self._auth
        if auth is None:
            return await self._refresh(stale_generation=0)
        if auth.refresh_at is not None and self._clock() >= auth.refresh_at:
            log.info("token_near_expiry", generation=auth.generation)
            return await self._refresh(auth.generation)
        return auth

    async def _refresh(self, stale_generation: int) -> _Auth:
        """Sign in unless someone already replaced the token of ``stale_generation``."""
        async with self._auth_lock:
            current = self._auth
            if current is not None and current.generation != stale_generation:
                return current
            return await self._sign_in_locked()

    async def _sign_in_locked(self) -> _Auth:
        settings = self.settings
        starting = self._auth is None
        payload = {"email": settings.email, "password": settings.password}
        reply = await self._send("POST", settings.signin_path, "sign-in", payload=payload)
        if reply.status in (400, 401, 403):
            raise AuthError(
                f"sign-in refused for {settings.email} at {settings.shown_url}: check --email / "
                "--password (or SENSIT_EMAIL / SENSIT_PASSWORD)"
            )
        if starting and (300 <= reply.status < 400 or reply.status in (404, 405)):
            where = f" to {reply.location}" if reply.location else ""
            raise ServerUnreachableError(
                f"{settings.shown_url} did not answer like the SENSIT Connect API "
                f"(HTTP {reply.status}{where} for {settings.signin_path}): check --base-url"
            )
        if not 200 <= reply.status < 300:
            raise self._counted(status_error(reply, "sign-in", self._secrets()))
        answer = sign_in_answer(reply.body)
        refusal = None if answer is not None else sign_in_refusal(reply.body, self._secrets())
        if refusal is not None:
            raise AuthError(f"sign-in refused by {settings.shown_url}: {refusal}")
        if answer is None:
            got = reply.content_type or "no content type"
            message = (
                f"{settings.shown_url} did not answer like the SENSIT Connect API "
                f"(got {got}, not a JSON object with accessToken and user): check --base-url"
            )
            if starting:
                raise ServerUnreachableError(message)
            raise self._counted(ShapeError(message))
        token, user_id, role = answer
        received_at = self._clock()
        previous = self._auth.generation if self._auth is not None else 0
        self._auth = _Auth(token, user_id, role, previous + 1, self._refresh_at(token, received_at))
        self.stats.sign_ins += 1
        log.info("signed_in", generation=previous + 1, role=role)
        return self._auth

    def _refresh_at(self, token: str, received_at: float) -> float | None:
        """When to sign in again: ``exp`` less a margin, anchored on our own clock.

        With ``iat`` the token's life is ``exp - iat`` counted from receipt, so a skewed
        local wall clock cannot make every call re-sign-in. Opaque tokens rely on 401s.
        """
        claims = jwt_claims(token) or {}
        exp, iat = number(claims.get("exp")), number(claims.get("iat"))
        if exp is None:
            log.info("token_without_exp", note="relying on 401 to refresh")
            return None
        life = exp - iat if iat is not None and iat < exp else exp - time.time()
        if life <= 0:
            log.warning("token_already_expired_by_local_clock", note="relying on 401 to refresh")
            return None
        margin = min(self.settings.refresh_margin_s, _MAX_MARGIN_SHARE * life)
        return received_at + life - margin

    async def _authorized(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        payload: Mapping[str, str] | None = None,
    ) -> Reply:
        """One call with the current token; on 401 one single-flight re-sign-in and a retry."""
        auth = await self._current_auth()
        reply = await self._send(
            method, path, what, token=auth.token, params=params, payload=payload
        )
        if reply.status != 401:
            return reply
        log.info("token_rejected", what=what, generation=auth.generation)
        fresh = await self._refresh(auth.generation)
        reply = await self._send(
            method, path, what, token=fresh.token, params=params, payload=payload
        )
        if reply.status == 401:
            raise AuthError(
                f"{what}: the server refused a freshly issued token (HTTP 401) for "
                f"{self.settings.email} at {self.settings.shown_url}: check the account's access"
            )
        return reply

    # -- transport and counting -----------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
        payload: Mapping[str, str] | None = None,
    ) -> Reply:
        if self._session is None:
            raise RuntimeError("SensitClient used outside 'async with'")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(payload)
        url = self._urls.get(path)
        if url is None:
            # aiohttp parses a str URL on every request; a yarl.URL once per route.
            url = yarl.URL(self._base + (path if path.startswith("/") else "/" + path))
            self._urls[path] = url
        self.stats.requests += 1
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            ) as response:
                # sock_read bounds each read; this bounds the whole body (a trickling server).
                async with asyncio.timeout(self.settings.read_timeout_s):
                    body, whole = await read_capped(response, self.settings.max_response_bytes)
                reply = Reply(
                    response.status,
                    body,
                    response.content_type,
                    response.headers.get("Retry-After"),
                    response.headers.get("Location"),
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.stats.transport_errors += 1
            shown_url, signed_in = self.settings.shown_url, self._auth is not None
            raise transport_error(exc, what, shown_url, signed_in=signed_in) from None
        self.stats.by_status[str(reply.status)] += 1
        self.stats.bytes_received += len(body)
        # A failure's status still decides (only an excerpt of its body is ever shown).
        if not whole and 200 <= reply.status < 300:
            cap_mb = self.settings.max_response_bytes / 2**20
            raise self._counted(
                ShapeError(
                    f"{what}: the response is larger than the {cap_mb:g} MiB cap "
                    "(--max-response-mb); refused without reading the rest"
                )
            )
        return reply

    def _secrets(self) -> tuple[str, str]:
        """What an error excerpt must never show: the password and the current token."""
        return self.settings.password, self._auth.token if self._auth else ""

    def _decoded(
        self, decode: Callable[[Reply, str, tuple[str, str]], _Decoded], reply: Reply, what: str
    ) -> _Decoded:
        """``decode(reply)``, with any error it raises counted in the stats."""
        try:
            return decode(reply, what, self._secrets())
        except RemoteError as exc:
            self._counted(exc)
            raise

    def _counted(self, error: RemoteError) -> RemoteError:
        """``error`` counted in the stats by its class (the run summary reports them)."""
        if isinstance(error, ShapeError):
            self.stats.shape_errors += 1
        elif isinstance(error, RateLimitedError):
            self.stats.rate_limited += 1
        elif isinstance(error, ServerError):
            self.stats.server_errors += 1
        return error
