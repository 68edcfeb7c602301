"""Discovery: sign in, list the selected devices and read the days each has data for.

Every command that asks the server anything starts here: ``plan`` and ``run`` plan from it,
``verify`` and ``report --verify`` compare the archive with it. The calls are paced by a
``RequestGate`` and retried like any other request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog

from harvester.api.client import ClientSettings, SensitClient
from harvester.archive.layout import unusable_uuid
from harvester.config import HarvestConfig
from harvester.errors import ConfigError, RemoteError
from harvester.fetch.backoff import RetryPolicy
from harvester.fetch.gate import RequestGate
from harvester.fetch.retrying import with_retries
from harvester.models import Device, DeviceDays, FailedDevice
from harvester.plan.shards import devices_of

log = structlog.get_logger(__name__)

T = TypeVar("T")

Availability = dict[Device, DeviceDays]


@dataclass(frozen=True)
class Discovery:
    """The available days of each selected device that answered, and the devices whose days
    could not be read (every other device is harvested all the same)."""

    availability: Availability
    failed: list[FailedDevice]

    @property
    def devices(self) -> list[Device]:
        """Every selected device, failed ones last."""
        return [*self.availability, *(f.device for f in self.failed)]


def select_devices(listed: Sequence[Device], config: HarvestConfig) -> list[Device]:
    """Devices of the configured type and uuids; unknown uuids are a configuration error."""
    if not listed:
        kind = "" if config.device_type == "ALL" else f"{config.device_type} "
        raise ConfigError(
            f"the account lists no {kind}devices: check --device-type and the account"
        )
    if not config.devices:
        return sorted(listed, key=lambda d: (d.type, d.uuid))
    by_uuid = {d.uuid: d for d in listed}
    unknown = [u for u in config.devices if u not in by_uuid]
    if unknown:
        known = ", ".join(sorted(by_uuid)[:10])
        raise ConfigError(
            f"unknown device uuid(s) {', '.join(unknown)} for --device-type "
            f"{config.device_type}: the account has {known}"
        )
    return [by_uuid[u] for u in config.devices]


async def discover(
    client: SensitClient,
    config: HarvestConfig,
    gate: RequestGate,
    timezone: str = "UTC",
) -> Discovery:
    """Sign in, list the selected devices and read their available days (bounded, paced).

    ``--max-attempts`` is a per-window budget; these few calls always get at least the
    default one, since without them there is no plan at all. A device whose days cannot be
    read (after the retries its error is worth) is a ``FailedDevice``; the others go on.
    """
    policy = RetryPolicy(max_attempts=max(RetryPolicy().max_attempts, config.max_attempts))

    async def paced(call: Callable[[], Awaitable[T]], what: str) -> T:
        return await with_retries(lambda: gate.send(call), policy, what=what)

    await paced(client.sign_in, "sign-in")
    listed = await paced(lambda: client.list_devices(config.device_type), "device list")
    devices = devices_of(select_devices(listed, config), config.shard)
    if config.shard is not None:
        log.info("shard_devices", shard=str(config.shard), devices=len(devices), of=len(listed))
    slots = asyncio.Semaphore(config.concurrency)

    async def dates_of(device: Device) -> DeviceDays | FailedDevice:
        unusable = unusable_uuid(device.uuid)
        if unusable is not None:
            log.warning("device_failed", device=device.uuid[:40], type=device.type, reason=unusable)
            return FailedDevice(device, f"{unusable}: it cannot name a folder of the archive")
        try:
            async with slots:
                days: DeviceDays = await paced(
                    lambda: client.available_dates(device, timezone), f"dates of {device.uuid}"
                )
        except RemoteError as exc:
            log.warning("device_failed", device=device.uuid, type=device.type, reason=str(exc))
            return FailedDevice(device, str(exc))
        if not days:
            log.warning("device_has_no_data", device=device.uuid, type=device.type)
        return days

    found = await asyncio.gather(*(dates_of(d) for d in devices))
    discovery = Discovery(
        {d: days for d, days in zip(devices, found, strict=True) if isinstance(days, DeviceDays)},
        [failure for failure in found if isinstance(failure, FailedDevice)],
    )
    log.info(
        "discovered",
        devices=len(discovery.availability),
        failed=len(discovery.failed),
        days=sum(len(days) for days in discovery.availability.values()),
    )
    return discovery


async def discover_devices(
    settings: ClientSettings, config: HarvestConfig, timezone: str = "UTC"
) -> Discovery:
    """``discover`` with a client and a gate of its own, closed when it is done: for the
    commands that ask the server about its devices and nothing else (plan, verify, report).

    ``settings`` come from the caller, which builds them first: a missing credential is told
    before anything else is looked at.
    """
    async with SensitClient(settings) as client:
        return await discover(client, config, RequestGate(config.rps), timezone)
