"""``harvester probe``'s requests: sent one at a time through a ``RequestGate`` at
``PROBE_RPS``, at most ``REQUEST_BUDGET`` of them, all read-only; then judged (``judge``) and,
with ``--record``, saved redacted (``harvester.api.recording``).

What to ask follows what came back (``choices``): sign in; list the devices (all, then the
chosen device's type); its available dates in UTC and in a far zone; the twelve windows of a
small finished day; two windows meeting on a record's time; a 4-hour window; the day's windows
as the vendor's examples spell them; and the available dates of a few other devices for the
estimate. A 429 is waited out (Retry-After, at most ``_MAX_WAIT_S``) and a 401 answered by one
new sign-in, each asked again once, within the budget. Refused credentials raise
``AuthError``; any other failure is an answer to judge, and what it prevents is UNKNOWN.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
import structlog

from harvester import __version__
from harvester.api.client import ClientSettings, SensitClient
from harvester.api.recording import Exchange, Identity, Kind, redact, write_recording
from harvester.api.replies import sign_in_refusal
from harvester.api.wire import parse_retry_after
from harvester.config import HarvestConfig
from harvester.errors import AuthError, ConfigError, RemoteError, ServerUnreachableError
from harvester.fetch.gate import RequestGate
from harvester.plan.windows import format_api_time, grid_slots, local_days_to_utc
from harvester.probe import choices
from harvester.probe.findings import (
    EdgeProbe,
    Findings,
    ListedDevice,
    Observed,
    OverCap,
    Variant,
    Window,
    listed_devices,
    read_days,
    read_sign_in,
)
from harvester.probe.judge import JudgeSettings, Row, judge

log = structlog.get_logger(__name__)

#: The probe's own pace, whatever --rps says (that is the rate the estimate is made for).
PROBE_RPS: Final = 2.0
REQUEST_BUDGET: Final = 40
#: Other devices whose available dates the estimate reads.
SAMPLED_DEVICES: Final = 8
_MAX_WAIT_S: Final = 10.0


@dataclass(frozen=True)
class ProbeOptions:
    """What ``harvester probe`` adds to the shared options."""

    device: str | None = None
    record: Path | None = None
    scramble: bool = False


@dataclass(frozen=True)
class ProbeReport:
    """The rows, what they were judged from, and where the recording went."""

    rows: list[Row]
    findings: Findings
    requests: int
    recorded: Path | None


class _BudgetSpent(Exception):
    """The next request would exceed ``REQUEST_BUDGET``."""


@dataclass
class _Asker:
    """Sends the probe's requests, paced and counted, and keeps every exchange."""

    client: SensitClient
    gate: RequestGate
    settings: ClientSettings
    budget: int
    sent: int = 0
    token: str | None = None
    kept: list[tuple[Kind, Observed]] = field(default_factory=list)
    identity: Identity = field(default_factory=Identity)

    async def ask(
        self,
        kind: Kind,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        payload: object = None,
    ) -> Observed:
        """One request; a 429 or (but for a sign-in) a 401 is asked again once."""
        body = b"" if payload is None else orjson.dumps(payload)
        observed = await self._send(kind, method, path, query, body)
        if observed.status == 429 and self.sent < self.budget:
            wait = parse_retry_after(observed.header("Retry-After"), dt.datetime.now(dt.UTC))
            await asyncio.sleep(min(_MAX_WAIT_S, 1.0 if wait is None else wait))
            observed = await self._send(kind, method, path, query, body)
        elif observed.status == 401 and kind != "sign-in" and self.sent + 1 < self.budget:
            log.info("probe_token_refused", what=observed.what)
            await self.sign_in()
            observed = await self._send(kind, method, path, query, body)
        return observed

    async def _send(
        self, kind: Kind, method: str, path: str, query: Sequence[tuple[str, str]], body: bytes
    ) -> Observed:
        if self.sent >= self.budget:
            raise _BudgetSpent
        await self.gate.wait_turn()
        self.sent += 1
        what = f"{method} {path}"
        token = None if kind == "sign-in" else self.token
        try:
            reply = await self.client.exchange(method, path, query=query, body=body, token=token)
        except ServerUnreachableError:
            raise
        except RemoteError as exc:
            observed = Observed(what, error=str(exc))
        else:
            exchange = Exchange(
                method, path, tuple(query), body, reply.status, reply.headers, reply.body
            )
            observed = Observed(what, exchange, reply.elapsed_s)
        self.kept.append((kind, observed))
        return observed

    async def sign_in(self) -> Observed:
        """Sign in; ``AuthError`` when the credentials are refused. A usable answer's token is
        used from then on, and its texts are what a recording takes out."""
        settings = self.settings
        payload = {"email": settings.email, "password": settings.password}
        observed = await self.ask("sign-in", "POST", settings.signin_path, payload=payload)
        exchange = observed.exchange
        if exchange is None:
            return observed
        if exchange.status in (400, 401, 403):
            raise AuthError(
                f"sign-in refused for {settings.email} at {settings.shown_url} (HTTP "
                f"{exchange.status}): check --email / --password (or SENSIT_EMAIL / "
                "SENSIT_PASSWORD)"
            )
        answer = read_sign_in(observed)
        refusal = None if answer.usable else sign_in_refusal(exchange.body, (settings.password,))
        if refusal is not None:
            raise AuthError(f"sign-in refused by {settings.shown_url}: {refusal}")
        if answer.usable:
            self.token = answer.token
            known = self.identity
            self.identity = Identity(
                tokens=(*known.tokens, answer.token),
                emails=tuple(dict.fromkeys((*known.emails, settings.email, answer.email))),
                user_ids=tuple(dict.fromkeys((*known.user_ids, answer.user_id))),
            )
        return observed


async def run_probe(config: HarvestConfig, options: ProbeOptions) -> ProbeReport:
    """Probe the service ``config`` points at; write the recording when asked (also after a
    refused sign-in, which then raises ``AuthError``)."""
    settings = ClientSettings.from_config(config)
    if options.record is not None:
        _prepare(options.record)
    since, until = local_days_to_utc(config.since, config.until, config.zone)
    findings = Findings(paced_rps=PROBE_RPS, budget=REQUEST_BUDGET)
    async with SensitClient(settings) as client:
        asker = _Asker(client, RequestGate(PROBE_RPS), settings, REQUEST_BUDGET)
        try:
            await _gather(asker, config, options, findings)
        except _BudgetSpent:
            findings.stopped = f"the budget of {REQUEST_BUDGET} requests was spent"
        finally:
            findings.every = tuple(observed for _, observed in asker.kept)
            if options.record is not None:
                _record(options.record, asker, settings, scramble=options.scramble)
    judged = JudgeSettings(
        rps=config.rps,
        concurrency=config.concurrency,
        read_timeout_s=config.read_timeout_s,
        max_response_bytes=config.max_response_mb << 20,
        since=since,
        until=until,
    )
    return ProbeReport(judge(findings, judged), findings, asker.sent, options.record)


async def _gather(asker: _Asker, config: HarvestConfig, options: ProbeOptions, f: Findings) -> None:
    """Ask what the findings need, each step only when the last one gave what it needs."""
    settings = asker.settings
    f.sign_in = await asker.sign_in()
    answer = read_sign_in(f.sign_in)
    if not answer.usable:
        f.device_reason = "not signed in"
        return
    query = [("DeviceType", "ALL"), ("Role", answer.role), ("UserId", answer.user_id)]
    f.devices = await asker.ask("devices", "GET", settings.devices_path, query=query)
    selected = choices.select_devices(listed_devices(f.devices), config.device_type, config.devices)
    f.selected_devices = len(selected)
    device, f.device_reason = choices.choose_device(selected, options.device)
    if device is None:
        return
    f.device = device
    typed = [("DeviceType", device.type), *query[1:]]
    f.devices_typed = await asker.ask("devices", "GET", settings.devices_path, query=typed)
    f.dates_utc = await _dates(asker, device, "UTC")
    f.dates_far = await _dates(asker, device, f.far_zone)
    days, problem = read_days(f.dates_utc)
    day, f.day_is_last, f.day_reason = choices.choose_day(days or [])
    if day is None:
        f.day_reason = problem or f.day_reason
        return
    f.day = day
    f.windows = tuple(
        [await _window(asker, device, start, end) for start, end in grid_slots(day.day)]
    )
    record, f.edge_reason = choices.choose_edge_record(f.windows)
    if record is not None and record.at is not None:
        (before, at), (_, after) = choices.edge_windows(record.at)
        ends = await _window(asker, device, before, at)
        f.edge = EdgeProbe(record, ends, await _window(asker, device, at, after))
    first, f.over_cap_reason = choices.choose_over_cap(f.windows)
    if first is not None:
        span = (f.windows[first].start, f.windows[first + 1].end)
        f.over_cap = OverCap(first, await _window(asker, device, *span))
    for name, index, sent, payload in choices.variant_requests(device, f.windows):
        observed = await asker.ask("records", "POST", _records_path(asker, device), payload=payload)
        canonical = f.windows[index]
        f.variants += (
            Variant(name, index, sent, Window.of(canonical.start, canonical.end, observed)),
        )
    for other in choices.sample_devices(selected, device, SAMPLED_DEVICES):
        f.sampled += ((other, await _dates(asker, other, "UTC")),)


def _records_path(asker: _Asker, device: ListedDevice) -> str:
    return asker.settings.records_path.replace("{type}", device.type)


async def _dates(asker: _Asker, device: ListedDevice, zone: str) -> Observed:
    payload = {"DeviceId": device.uuid, "DeviceType": device.type, "Timezone": zone}
    path = asker.settings.dates_path.replace("{type}", device.type)
    return await asker.ask("dates", "POST", path, payload=payload)


async def _window(
    asker: _Asker, device: ListedDevice, start: dt.datetime, end: dt.datetime
) -> Window:
    payload = choices.window_payload(device, format_api_time(start), format_api_time(end))
    observed = await asker.ask("records", "POST", _records_path(asker, device), payload=payload)
    return Window.of(start, end, observed)


def _prepare(folder: Path) -> None:
    """Make the recording's folder before any request: a folder that cannot be written is a
    usage error, not a probe spent for nothing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_file = folder / ".probe-write-check"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise ConfigError(f"--record {folder}: cannot write there: {exc.strerror or exc}") from None


def _record(folder: Path, asker: _Asker, settings: ClientSettings, *, scramble: bool) -> None:
    # The key is drawn afresh and never kept: scrambled values cannot be traced back.
    key = secrets.token_bytes(32) if scramble else None
    answered = [
        redact(observed.exchange, kind, asker.identity, key)
        for kind, observed in asker.kept
        if observed.exchange is not None
    ]
    session = {
        "recorder": "harvester probe",
        "harvester_version": __version__,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_url": settings.shown_url,
        "scrambled": scramble,
        "requests": asker.sent,
        "unanswered": sum(1 for _, observed in asker.kept if observed.exchange is None),
    }
    try:
        write_recording(folder, answered, session)
    except OSError as exc:
        raise ConfigError(f"--record {folder}: cannot write there: {exc.strerror or exc}") from None
    log.info("probe_recorded", folder=str(folder), exchanges=len(answered), scrambled=scramble)
