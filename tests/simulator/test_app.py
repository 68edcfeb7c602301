"""The simulator's HTTP surface, in process: shapes, errors, counts, clock, misbehaviour."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from harvester.simulator.auth import TokenAuthority, make_account
from harvester.simulator.options import FAULT_KINDS
from tests.simulator.conftest import api_for
from tests.support import plain_client

HEX24 = re.compile(r"^[0-9a-f]{24}$")
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$")
SPOD_FIELDS = {
    "_id", "id", "date", "pid1_PPB_Calc", "pid1_mvRaw", "temp", "rh_Humd", "pressure_mbar",
    "ws_speed", "ws_direction", "tc_temp", "tc_heatOutput", "tc_setPoint", "batt_voltage",
    "chrg_current", "run_current", "lat", "long",
}  # fmt: skip
DEVICE_FIELDS = {
    "_id", "uuid", "key", "name", "location", "picture", "status", "type", "isUTCTimeZone",
    "isFirmwareUpdateRequire", "isCharging", "lastReceivedRecord", "battery",
}  # fmt: skip


def _epoch(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def test_sign_in_answers_token_and_user_for_json_and_form_bodies() -> None:
    """Sign-in accepts JSON and form bodies; the JWT payload matches the vendor sample."""
    async with api_for(token_ttl_s=600) as api:
        claims = _claims(api.token)
        assert set(claims) == {"email", "role", "displayName", "status", "iat", "exp"}
        assert claims["exp"] - claims["iat"] == 600
        assert abs(claims["iat"] - time.time()) < 60
        assert claims["role"] == api.user["role"] == "SystemAdministrator"
        assert HEX24.match(api.user["id"])
        assert {"id", "role", "email", "displayName", "status"} <= set(api.user)
        form = {"email": "demo@example.com", "password": "demo"}
        async with api.session.post(api.url + "/users/signin", data=form) as response:
            assert response.status == 200
            assert "accessToken" in await response.json()


@pytest.mark.parametrize(
    ("email", "password"), [("demo@example.com", "wrong"), ("someone@example.com", "demo")]
)
async def test_sign_in_refuses_bad_credentials(email: str, password: str) -> None:
    """A wrong password or unknown e-mail gets 401 with a JSON message."""
    async with api_for() as api:
        status, answer = await api.post("/users/signin", {"email": email, "password": password})
        assert status == 401
        assert "message" in answer


async def test_protected_routes_refuse_missing_malformed_forged_and_expired_tokens() -> None:
    """Every non-admin route but sign-in answers 401 (JSON) for an unacceptable token."""
    expired = TokenAuthority(1, 60, clock=lambda: time.time() - 3600).issue(
        make_account("demo@example.com", "demo", 1)
    )
    forged = TokenAuthority(2, 3600).issue(make_account("demo@example.com", "demo", 2))
    async with api_for(seed=1) as api:
        good = api.token
        for token in ("", "not-a-jwt", good[:-3] + "abc", forged, expired):
            api.token = token
            body = {"DeviceId": "1001", "DeviceType": "FMD", "Timezone": "UTC"}
            status, answer = await api.post("/sensors-data/getFMDDataAvailableDates", body)
            assert (status, "message" in answer) == (401, True), token
            status, _ = await api.get(
                "/clients/getDevicesFromDeviceTypeAndRole", {"DeviceType": "ALL"}
            )
            assert status == 401
        api.token = good
        assert await api.dates("1001", "FMD")


async def test_devices_listing_has_documented_fields_and_filters_by_type() -> None:
    """Devices carry every documented field, spread over the types; DeviceType filters."""
    async with api_for(devices=7, days=3) as api:
        devices = await api.devices()
        assert [d["uuid"] for d in devices] == [str(1001 + n) for n in range(7)]
        assert {d["type"] for d in devices} == {"FMD", "SPOD", "RAMP"}
        for device in devices:
            assert set(device) == DEVICE_FIELDS
            assert HEX24.match(device["_id"])
            assert device["name"] == f"METEC {device['uuid']}"
        for device_type in ("FMD", "SPOD", "RAMP"):
            subset = await api.devices(device_type)
            assert [d["uuid"] for d in subset] == [
                d["uuid"] for d in devices if d["type"] == device_type
            ]
        status, answer = await api.get(
            "/clients/getDevicesFromDeviceTypeAndRole",
            {"DeviceType": "XYZ", "Role": "SystemAdministrator", "UserId": api.user["id"]},
        )
        assert status == 400
        status, answer = await api.get(
            "/clients/getDevicesFromDeviceTypeAndRole",
            {"DeviceType": "ALL", "Role": "SystemAdministrator", "UserId": "0" * 24},
        )
        assert (status, answer) == (200, [])


async def test_last_received_record_is_the_newest_record() -> None:
    """``lastReceivedRecord`` equals the newest record the records route serves."""
    async with api_for(devices=3, days=2) as api:
        for device in await api.devices():
            last = device["lastReceivedRecord"]
            newest = await api.window(
                device["uuid"], device["type"], "2024-01-02 12:00:00", "2024-01-02 14:00:00"
            )
            assert newest[0] == last
            assert last["date"] == "2024-01-02T14:00:00.000Z"


async def test_window_is_newest_first_inclusive_and_accepts_vendor_date_spellings() -> None:
    """Records come newest first, both bounds inclusive; padded, unpadded, hour 24 agree."""
    async with api_for(devices=3, days=3, cadence_s=60) as api:
        for device in await api.devices():
            uuid, kind = device["uuid"], device["type"]
            padded = await api.window(uuid, kind, "2024-01-02 22:00:00", "2024-01-03 00:00:00")
            hour24 = await api.window(uuid, kind, "2024-01-02 22:00:00", "2024-01-02 24:00:00")
            loose = await api.window(uuid, kind, "2024-1-2 22:0:0", "2024-1-2 24:00:00")
            assert padded == hour24 == loose
            dates = [r["date"] for r in padded]
            assert dates == sorted(dates, reverse=True)
            if padded:
                assert len(padded) <= 121
            if len(padded) == 121:
                assert dates[0] == "2024-01-03T00:00:00.000Z"
                assert dates[-1] == "2024-01-02T22:00:00.000Z"
            for record in padded:
                assert HEX24.match(record["_id"])
                assert ISO_MS.match(record["date"])
                assert record["id"] == uuid
                assert _epoch(record["date"]) % 60 == 0
                assert int(record["_id"][:8], 16) == _epoch(record["date"])
            if kind == "SPOD":
                assert all(set(r) == SPOD_FIELDS for r in padded)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"DeviceId": "1001", "StartDate": "2024-01-02 00:00:00"}, "EndDate"),
        ({"DeviceId": "1001", "EndDate": "2024-01-02 00:00:00"}, "StartDate"),
        ({"StartDate": "2024-01-02 00:00:00", "EndDate": "2024-01-02 02:00:00"}, "DeviceId"),
        ({"DeviceId": "1001", "StartDate": "2024-01-02", "EndDate": "x"}, "StartDate"),
        ({"DeviceId": "1001", "StartDate": "2024-02-30 00:00:00", "EndDate": "x"}, "StartDate"),
        (
            {
                "DeviceId": "1001",
                "StartDate": "2024-01-02 02:00:00",
                "EndDate": "2024-01-02 25:00:00",
            },
            "EndDate",
        ),
        (
            {
                "DeviceId": "1001",
                "StartDate": "2024-01-02 02:00:00",
                "EndDate": "2024-01-02 01:00:00",
            },
            "before",
        ),
        (
            {
                "DeviceId": "1001",
                "StartDate": "2024-01-02 00:00:00",
                "EndDate": "2024-01-02 02:00:01",
            },
            "at most",
        ),
    ],
)
async def test_records_route_rejects_bad_requests_with_400(
    body: dict[str, str], fragment: str
) -> None:
    """Missing fields, unparsable dates, end before start and long windows get a JSON 400."""
    async with api_for(devices=1, days=2) as api:
        status, answer = await api.post("/sensors-data/getFMDDeviceLogForGivenHour", body)
        assert status == 400
        assert fragment in answer["message"]


async def test_records_route_rejects_a_body_that_is_not_a_json_object() -> None:
    """A body that is not a JSON object gets 400."""
    async with api_for(devices=1, days=2) as api:
        url = api.url + "/sensors-data/getFMDDeviceLogForGivenHour"
        async with api.session.post(url, data=b"{nope", headers=api.headers()) as response:
            assert response.status == 400


async def test_unknown_device_or_wrong_type_gets_empty_answers() -> None:
    """An unknown DeviceId, or a device asked through another type's route, gets 200 empty."""
    async with api_for(devices=3, days=2) as api:
        assert await api.window("9999", "FMD", "2024-01-01 00:00:00", "2024-01-01 02:00:00") == []
        assert await api.window("1001", "SPOD", "2024-01-01 00:00:00", "2024-01-01 02:00:00") == []
        assert await api.dates("9999", "FMD") == []
        assert await api.dates("1001", "RAMP") == []
        assert await api.window("1001", "FMD", "2024-01-01 00:00:00", "2024-01-01 02:00:00")


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "../etc/passwd"])
async def test_available_dates_reject_unknown_time_zones(zone: str) -> None:
    """A missing or unknown Timezone gets 400 with a JSON message."""
    async with api_for(devices=1, days=2) as api:
        body = {"DeviceId": "1001", "DeviceType": "FMD", "Timezone": zone}
        status, answer = await api.post("/sensors-data/getFMDDataAvailableDates", body)
        assert status == 400
        assert "message" in answer


async def test_alternative_ramp_path_serves_the_same_records() -> None:
    """``getRAMPDeviceLogBetweenTimePeriod`` answers like the per-hour route."""
    async with api_for(devices=3, days=2) as api:
        body = {
            "DeviceID": "1003",
            "StartDate": "2024-01-01 10:00:00",
            "EndDate": "2024-01-01 12:00:00",
        }
        _, main = await api.post("/sensors-data/getRAMPDeviceLogForGivenHour", body)
        status, other = await api.post("/sensors-data/getRAMPDeviceLogBetweenTimePeriod", body)
        assert status == 200
        assert other == main
        assert len(main["data"]) == 121


async def _check_days(api: Any, zone: str) -> int:
    checked = 0
    for device in await api.devices():
        dates = await api.dates(device["uuid"], device["type"], zone)
        days = [plain_client.day_of(entry) for entry in dates]
        assert days == sorted(days)
        assert len(set(days)) == len(days)
        for entry, day in zip(dates, days, strict=True):
            windows = plain_client.local_day_windows(day, zone)
            seen: dict[str, Any] = {}
            for start, end in windows:
                for record in await api.window(device["uuid"], device["type"], start, end):
                    seen[record["_id"]] = record
            zone_info = ZoneInfo(zone)
            by_day: dict[dt.date, list[str]] = {}
            for record in seen.values():
                moment = dt.datetime.fromisoformat(record["date"].replace("Z", "+00:00"))
                by_day.setdefault(moment.astimezone(zone_info).date(), []).append(record["date"])
            # Inclusive bounds: the last window may also return the next midnight's record.
            assert set(by_day) <= {day, day + dt.timedelta(days=1)}
            assert len(by_day.get(day + dt.timedelta(days=1), [])) <= 1
            assert len(by_day[day]) == entry["count"], (device["uuid"], day)
            assert max(by_day[day]) == entry["date"]
            checked += 1
    return checked


@pytest.mark.parametrize("zone", ["UTC", "America/Chicago", "Asia/Kolkata"])
@pytest.mark.parametrize("start", [dt.date(2024, 3, 8), dt.date(2024, 11, 1)])
async def test_distinct_records_of_a_days_windows_number_the_days_count(
    zone: str, start: dt.date
) -> None:
    """Per device and local day (across a DST change), the windows' records match ``count``."""
    async with api_for(devices=4, start=start, days=4, cadence_s=120, seed=5) as api:
        assert await _check_days(api, zone) >= 12


async def test_clock_moves_the_present_and_no_record_is_after_it() -> None:
    """No record lies after the present; moving the clock brings new records and counts."""
    async with api_for(devices=1, days=2, cadence_s=60) as api:
        before = await api.window("1001", "FMD", "2024-01-02 13:00:00", "2024-01-02 15:00:00")
        assert before[0]["date"] == "2024-01-02T14:00:00.000Z"
        count_before = (await api.dates("1001", "FMD"))[-1]["count"]
        status, answer = await api.post("/__sim/clock", {"now": "2024-01-02T14:30:30Z"})
        assert status == 200
        assert answer["now"].startswith("2024-01-02T14:30:30")
        after = await api.window("1001", "FMD", "2024-01-02 13:00:00", "2024-01-02 15:00:00")
        assert after[0]["date"] == "2024-01-02T14:30:00.000Z"
        assert after[len(after) - len(before) :] == before
        assert (await api.dates("1001", "FMD"))[-1]["count"] == count_before + 30
        await api.post("/__sim/clock", {"now": "2024-01-04T01:00:00+00:00"})
        assert plain_client.day_of((await api.dates("1001", "FMD"))[-1]) == dt.date(2024, 1, 4)
        status, _ = await api.post("/__sim/clock", {"now": "yesterday"})
        assert status == 400
        assert (await api.stats())["now"].startswith("2024-01-04T01:00:00")


async def test_stats_count_requests_by_path_and_status() -> None:
    """``/__sim/stats`` counts requests per path and status and the records served."""
    async with api_for(devices=1, days=2) as api:
        records = await api.window("1001", "FMD", "2024-01-01 00:00:00", "2024-01-01 02:00:00")
        await api.post("/sensors-data/getFMDDeviceLogForGivenHour", {"DeviceId": "1001"})
        async with api.session.get(api.url + "/no/such/route") as response:
            assert response.status == 404
        stats = await api.stats()
        assert stats["requests"]["/sensors-data/getFMDDeviceLogForGivenHour"] == {
            "200": 1,
            "400": 1,
        }
        assert stats["requests"]["/no/such/route"] == {"404": 1}
        assert stats["requests"]["/users/signin"] == {"200": 1}
        assert stats["records_served"] == len(records) == 121
        assert stats["faults_injected"] == {}
        assert stats["sign_ins"] == 1


async def test_rate_limit_answers_429_with_and_without_retry_after() -> None:
    """Beyond the bucket, requests get 429; Retry-After is usually sent, sometimes not."""
    async with api_for(devices=1, days=2, rate_limit=3) as api:
        outcomes = []
        for _ in range(12):
            url = api.url + "/sensors-data/getFMDDataAvailableDates"
            body = {"DeviceId": "1001", "DeviceType": "FMD", "Timezone": "UTC"}
            async with api.session.post(url, json=body, headers=api.headers()) as response:
                outcomes.append((response.status, response.headers.get("Retry-After")))
        limited = [retry for status, retry in outcomes if status == 429]
        assert len(limited) >= 6
        assert all(retry is None or int(retry) >= 1 for retry in limited)
        assert None in limited
        assert any(retry is not None for retry in limited)
        stats = await api.stats()
        assert stats["rate_limited"] == len(limited)
        await asyncio.sleep(0.7)
        assert await api.dates("1001", "FMD")


async def _attempt(api: Any, body: dict[str, Any]) -> tuple[str, bytes]:
    url = api.url + "/sensors-data/getFMDDeviceLogForGivenHour"
    try:
        async with api.session.post(url, json=body, headers=api.headers()) as response:
            return str(response.status), await response.read()
    except aiohttp.ClientPayloadError:
        return "reset", b""


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_kind_is_injected_and_transient(kind: str) -> None:
    """With fault rate 1 a request fails as configured, at most N times, then succeeds."""
    options = {"fault_rate": 1.0, "fault_kinds": (kind,), "max_consecutive_faults": 2}
    async with api_for(devices=1, days=2, slow_fault_s=0.2, **options) as api:
        body = {
            "DeviceId": "1001",
            "StartDate": "2024-01-01 00:00:00",
            "EndDate": "2024-01-01 02:00:00",
        }
        attempts = [await _attempt(api, body) for _ in range(3)]
        good = json.loads(attempts[2][1])
        assert attempts[2][0] == "200"
        assert len(good["data"]) == 121
        for status, raw in attempts[:2]:
            if kind in ("500", "502", "503"):
                assert status == kind
                assert raw.startswith(b"<html>")
            elif kind == "reset":
                assert status == "reset"
            elif kind == "truncated":
                assert status == "200"
                with pytest.raises(json.JSONDecodeError):
                    json.loads(raw)
            elif kind == "nodata":
                assert status == "200"
                assert "data" not in json.loads(raw)
            else:
                assert json.loads(raw) == good
        stats = await api.stats()
        assert stats["faults_injected"] == {kind: 2}
        if kind == "reset":
            assert stats["requests"]["/sensors-data/getFMDDeviceLogForGivenHour"]["reset"] == 2


async def test_fault_rate_mixes_kinds_and_every_request_eventually_succeeds() -> None:
    """A fault rate of 0.5 hits about half the data calls with several kinds; retries win."""
    kinds = ("500", "502", "503", "truncated", "nodata", "reset")
    async with api_for(devices=1, days=3, fault_rate=0.5, fault_kinds=kinds) as api:
        first_tries_failed = 0
        for hour in range(0, 24, 2):
            body = {
                "DeviceId": "1001",
                "StartDate": f"2024-01-02 {hour:02d}:00:00",
                "EndDate": f"2024-01-02 {hour + 2:02d}:00:00",
            }
            for attempt in range(4):
                status, raw = await _attempt(api, body)
                if status == "200" and raw.endswith(b"]}") and b'"data"' in raw:
                    break
                first_tries_failed += attempt == 0
            else:
                pytest.fail(f"window {hour} never succeeded")
        stats = await api.stats()
        assert 2 <= first_tries_failed <= 11
        assert len(stats["faults_injected"]) >= 2


async def test_same_seed_gives_same_records_and_another_seed_differs() -> None:
    """Records depend only on the options: same seed same bytes, other seed other values."""
    window = ("1002", "SPOD", "2024-01-02 04:00:00", "2024-01-02 06:00:00")
    async with api_for(seed=7, days=3) as one, api_for(seed=7, days=3) as two:
        assert await one.window(*window) == await two.window(*window)
        assert await one.dates("1002", "SPOD") == await two.dates("1002", "SPOD")
    async with api_for(seed=8, days=3) as other, api_for(seed=7, days=3) as again:
        assert await other.window(*window) != await again.window(*window)


async def test_plain_client_collects_exactly_the_counted_records() -> None:
    """The standard-library vendor-recipe client works unchanged against the simulator."""
    async with api_for(devices=3, days=3, cadence_s=300) as api:
        for zone in ("UTC", "America/Chicago"):
            records = await asyncio.to_thread(
                plain_client.collect_all, api.url, "demo@example.com", "demo", "ALL", zone
            )
            expected = 0
            for device in await api.devices():
                expected += sum(
                    e["count"] for e in await api.dates(device["uuid"], device["type"], zone)
                )
            assert len(records) == expected > 0
