"""The aiohttp application: every route of ``sensit-api.md`` plus two admin routes.

Data routes (per TYPE in FMD, SPOD, RAMP):
``POST /sensors-data/get{TYPE}DataAvailableDates`` and
``POST /sensors-data/get{TYPE}DeviceLogForGivenHour`` (also served as
``/sensors-data/getRAMPDeviceLogBetweenTimePeriod``, the alternative path seen in the wild).
Bodies name the device as ``DeviceId`` or ``DeviceID``. Errors are JSON ``{"message": ...}``:
400 for a malformed request, 401 for a refused token. An unknown ``DeviceId`` is not an
error: it gets an empty answer (see ``data.py``). Misbehaviour on request: latency with
±20 % jitter and the per-account rate limit apply to every non-admin route; faults only to
data routes, and only to requests that are otherwise valid. What the vendor leaves open (whether
a window's ends are inclusive, the order of its records, a window over the cap, the envelope,
the date style) follows the options' switches (``options.SWITCHES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiohttp import web

from harvester.models import DEVICE_TYPES
from harvester.simulator.auth import Account, TokenAuthority, make_account
from harvester.simulator.data import SimulatedData
from harvester.simulator.faults import HTML_ERRORS, FaultPlan, error_page
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.parsing import parse_api_time, parse_instant
from harvester.simulator.ratelimit import RateLimiter
from harvester.simulator.stats import Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ADMIN_PREFIX = "/__sim/"


@dataclass
class SimulatorState:
    """Everything the handlers share."""

    options: SimulatorOptions
    data: SimulatedData
    account: Account
    tokens: TokenAuthority
    faults: FaultPlan
    limiter: RateLimiter
    stats: Stats = field(default_factory=Stats)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    jitter: random.Random = field(default_factory=random.Random)


STATE = web.AppKey("simulator_state", SimulatorState)
_STATUS = web.RequestKey("simulator_status", str)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"message": message, "statusCode": status}, status, headers)


@web.middleware
async def _count_and_throttle(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    status = "500"
    try:
        if not request.path.startswith(ADMIN_PREFIX):
            if state.options.latency_ms > 0:
                jitter = state.jitter.uniform(0.8, 1.2)
                await asyncio.sleep(state.options.latency_ms * jitter / 1000.0)
            claims, _ = state.tokens.check(request.headers.get("Authorization"))
            wait = state.limiter.take(claims["email"] if claims else "anonymous")
            if wait is not None:
                state.stats.rate_limited += 1
                retry_after = state.limiter.retry_after_header(wait)
                headers = {"Retry-After": retry_after} if retry_after else None
                status = "429"
                return _error(429, "Too many requests, slow down", headers)
        response = await handler(request)
        status = request.get(_STATUS) or str(response.status)
        return response
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    finally:
        state.stats.count(request.path, status)


def _refusal(request: web.Request) -> web.Response | None:
    """A 401 answer when the request's token is not acceptable, else None."""
    claims, reason = request.app[STATE].tokens.check(request.headers.get("Authorization"))
    return None if claims else _error(401, f"Unauthorized: {reason}")


async def _json_object(request: web.Request) -> tuple[bytes, dict[str, Any] | None]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, None
    return raw, body if isinstance(body, dict) else None


async def _sign_in(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        fields: dict[str, Any] | None = {key: str(value) for key, value in form.items()}
    else:
        _, fields = await _json_object(request)
    if fields is None:
        return _error(400, "the body must be a JSON object with email and password")
    account = state.account
    if fields.get("email") != account.email or fields.get("password") != account.password:
        return _error(401, "Invalid email or password")
    state.stats.sign_ins += 1
    return _json(
        {
            "accessToken": state.tokens.issue(account),
            "user": account.user(),
            "message": "Logged in successfully",
        }
    )


async def _devices(request: web.Request) -> web.StreamResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    state = request.app[STATE]
    device_type = request.query.get("DeviceType", "")
    if device_type not in ("ALL", *DEVICE_TYPES):
        return _error(400, "DeviceType must be one of ALL, FMD, SPOD, RAMP")
    if request.query.get("UserId") != state.account.user_id:
        return _json(b"[]")
    return _json(state.data.device_listing(device_type))


def _device_uuid(body: dict[str, Any]) -> str | None:
    value = body.get("DeviceId", body.get("DeviceID"))
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


async def _deliver(
    request: web.Request, fault: str | None, body: bytes, records: int
) -> web.StreamResponse:
    """Send ``body`` as the answer, or the misbehaving version that ``fault`` calls for."""
    state = request.app[STATE]
    if fault is not None:
        state.stats.faults_injected[fault] += 1
    if fault in HTML_ERRORS:
        return web.Response(text=error_page(fault), status=int(fault), content_type="text/html")
    if fault == "nodata":
        return _json({"message": "Request processed"})
    if fault == "truncated":
        return _json(body[: max(1, len(body) // 2)])
    if fault == "reset":
        return await _reset_midway(request, body)
    if fault == "slow":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), state.options.slow_fault_s)
    state.stats.records_served += records
    return _json(body)


async def _reset_midway(request: web.Request, body: bytes) -> web.StreamResponse:
    """Send the headers and part of the body, then abort the connection."""
    request[_STATUS] = "reset"
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: max(1, len(body) // 3)])
    if request.transport is not None:
        request.transport.abort()
    return response


@dataclass(frozen=True)
class _DataCall:
    """An authorised data call with a JSON object body naming a device."""

    raw: bytes
    body: dict[str, Any]
    uuid: str


async def _data_call(request: web.Request) -> _DataCall | web.StreamResponse:
    """The checks every data route starts with; an error response when one fails."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    raw, body = await _json_object(request)
    if body is None:
        return _error(400, "the body must be a JSON object")
    uuid = _device_uuid(body)
    if uuid is None:
        return _error(400, "DeviceId is required")
    return _DataCall(raw, body, uuid)


def _available_dates(device_type: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        call = await _data_call(request)
        if not isinstance(call, _DataCall):
            return call
        state = request.app[STATE]
        zone_name = call.body.get("Timezone")
        if not isinstance(zone_name, str) or not zone_name:
            return _error(400, "Timezone is required (an IANA name such as America/Chicago)")
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            return _error(400, f"unknown time zone {zone_name!r}")
        fault = state.faults.decide(request.path, call.raw)
        device = state.data.find(call.uuid, device_type)
        if device is None or call.body.get("DeviceType", device_type) != device_type:
            return await _deliver(request, fault, b"[]", 0)
        return await _deliver(request, fault, state.data.available_dates(device, zone), 0)

    return handle


def _served_span(start: int, end: int, bounds: str) -> tuple[int, int]:
    """The first and last second whose records a window ``start``..``end`` holds under
    ``bounds``; records lie on whole seconds, so an open end is one second in."""
    if bounds == "inclusive":
        return start, end
    if bounds == "half-open":
        return start, end - 1
    return start + 1, end - 1


def _records(device_type: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        call = await _data_call(request)
        if not isinstance(call, _DataCall):
            return call
        state = request.app[STATE]
        bounds: list[int] = []
        for name in ("StartDate", "EndDate"):
            if name not in call.body:
                return _error(400, f"{name} is required")
            moment = parse_api_time(call.body[name])
            if moment is None:
                return _error(400, f"{name} must be 'YYYY-MM-DD HH:MM:SS' (UTC)")
            bounds.append(moment)
        start, end = bounds
        if end < start:
            return _error(400, "EndDate is before StartDate")
        options = state.options
        cap_s = options.max_window_h * 3600
        if end - start > cap_s:
            if options.over_cap == "reject":
                return _error(400, f"a window may span at most {options.max_window_h:g} h")
            end = start + int(cap_s)
        fault = state.faults.decide(request.path, call.raw)
        device = state.data.find(call.uuid, device_type)
        if device is None or call.body.get("DeviceType", device_type) != device_type:
            return await _deliver(request, fault, state.data.empty_window, 0)
        low, high = _served_span(start, end, options.bounds)
        payload, records = state.data.window(device, low, high)
        return await _deliver(request, fault, payload, records)

    return handle


async def _stats(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    snapshot = state.stats.snapshot()
    snapshot["now"] = state.data.now.isoformat()
    return _json(snapshot)


async def _clock(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    _, body = await _json_object(request)
    moment = parse_instant(body.get("now")) if body is not None else None
    if moment is None:
        return _error(400, 'the body must be {"now": "<ISO-8601 instant>"}')
    state.data.set_now(moment)
    return _json({"now": state.data.now.isoformat()})


async def _wake_sleepers(app: web.Application) -> None:
    app[STATE].closing.set()


def build_app(options: SimulatorOptions) -> web.Application:
    """The simulator as an aiohttp application (``options`` must be valid)."""
    state = SimulatorState(
        options=options,
        data=SimulatedData(options),
        account=make_account(options.email, options.password, options.seed),
        tokens=TokenAuthority(options.seed, options.token_ttl_s),
        faults=FaultPlan(options),
        limiter=RateLimiter(options.rate_limit),
    )
    state.jitter.seed(options.seed)
    app = web.Application(middlewares=[_count_and_throttle])
    app[STATE] = state
    app.router.add_post("/users/signin", _sign_in)
    app.router.add_get("/clients/getDevicesFromDeviceTypeAndRole", _devices)
    for device_type in DEVICE_TYPES:
        prefix = f"/sensors-data/get{device_type}"
        app.router.add_post(f"{prefix}DataAvailableDates", _available_dates(device_type))
        app.router.add_post(f"{prefix}DeviceLogForGivenHour", _records(device_type))
    app.router.add_post("/sensors-data/getRAMPDeviceLogBetweenTimePeriod", _records("RAMP"))
    app.router.add_get(f"{ADMIN_PREFIX}stats", _stats)
    app.router.add_post(f"{ADMIN_PREFIX}clock", _clock)
    app.on_shutdown.append(_wake_sleepers)
    return app
