"""A plain sequential SENSIT Connect client: standard library only, the vendor's recipe.

It follows the vendor document's examples literally: sign in with a JSON body, list devices
with ``DeviceType=ALL``, ``Role`` and ``UserId`` from the sign-in, ask each device's
``get{TYPE}DataAvailableDates``, and walk each listed day in twelve 2-hour windows
``"YYYY-MM-DD HH:00:00"`` .. ``"YYYY-MM-DD HH+2:00:00"`` (hour 24 for the last, as the
vendor's Python example does). No retries, no concurrency: a yardstick, not a harvester.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
import urllib.request
from typing import Any
from zoneinfo import ZoneInfo

DATA_PATHS = {
    "dates": "/sensors-data/get{type}DataAvailableDates",
    "records": "/sensors-data/get{type}DeviceLogForGivenHour",
}


def call(base_url: str, method: str, path: str, token: str = "", body: Any = None) -> Any:
    """One HTTP call with a JSON body; returns the decoded JSON answer (raises on HTTP errors)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def sign_in(base_url: str, email: str, password: str) -> dict[str, Any]:
    """The sign-in answer: ``accessToken``, ``user``, ``message``."""
    answer: dict[str, Any] = call(
        base_url, "POST", "/users/signin", body={"email": email, "password": password}
    )
    return answer


def list_devices(base_url: str, login: dict[str, Any], device_type: str = "ALL") -> list[Any]:
    """The devices listing for the signed-in user."""
    query = urllib.parse.urlencode(
        {"DeviceType": device_type, "Role": login["user"]["role"], "UserId": login["user"]["id"]}
    )
    path = "/clients/getDevicesFromDeviceTypeAndRole?" + query
    devices: list[Any] = call(base_url, "GET", path, login["accessToken"])
    return devices


def available_dates(
    base_url: str, token: str, uuid: str, device_type: str, timezone: str = "UTC"
) -> list[dict[str, Any]]:
    """``get{TYPE}DataAvailableDates`` for one device."""
    body = {"DeviceId": uuid, "DeviceType": device_type, "Timezone": timezone}
    dates: list[dict[str, Any]] = call(
        base_url, "POST", DATA_PATHS["dates"].format(type=device_type), token, body
    )
    return dates


def fetch_window(
    base_url: str, token: str, uuid: str, device_type: str, start: str, end: str
) -> list[dict[str, Any]]:
    """The records of one window (the server's order: newest first)."""
    body = {"DeviceId": uuid, "DeviceType": device_type, "StartDate": start, "EndDate": end}
    answer = call(base_url, "POST", DATA_PATHS["records"].format(type=device_type), token, body)
    records: list[dict[str, Any]] = answer["data"]
    return records


def utc_day_windows(day: dt.date) -> list[tuple[str, str]]:
    """The vendor's twelve windows of a UTC day, the last one ending at hour 24."""
    stamp = day.isoformat()
    return [(f"{stamp} {h:02d}:00:00", f"{stamp} {h + 2:02d}:00:00") for h in range(0, 24, 2)]


def local_day_windows(day: dt.date, timezone: str) -> list[tuple[str, str]]:
    """A local day's UTC span in windows of at most two hours (23, 24 or 25 h long)."""
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    windows = []
    while start < end:
        stop = min(end, start + dt.timedelta(hours=2))
        windows.append((f"{start:%Y-%m-%d %H:%M:%S}", f"{stop:%Y-%m-%d %H:%M:%S}"))
        start = stop
    return windows


def day_of(entry: dict[str, Any]) -> dt.date:
    """The calendar day of an available-dates entry."""
    key = entry["_id"]
    return dt.date(key["year"], key["month"], key["day"])


def collect_device_day(
    base_url: str, token: str, device: dict[str, Any], day: dt.date, timezone: str = "UTC"
) -> dict[str, dict[str, Any]]:
    """Every distinct record of one device on one day of ``timezone``, by ``_id``."""
    windows = utc_day_windows(day) if timezone == "UTC" else local_day_windows(day, timezone)
    records: dict[str, dict[str, Any]] = {}
    for start, end in windows:
        for record in fetch_window(base_url, token, device["uuid"], device["type"], start, end):
            records[record["_id"]] = record
    return records


def collect_all(
    base_url: str, email: str, password: str, device_type: str = "ALL", timezone: str = "UTC"
) -> dict[str, dict[str, Any]]:
    """Every record of every device, by ``_id`` (boundary records arrive twice, kept once)."""
    login = sign_in(base_url, email, password)
    token = login["accessToken"]
    records: dict[str, dict[str, Any]] = {}
    for device in list_devices(base_url, login, device_type):
        for entry in available_dates(base_url, token, device["uuid"], device["type"], timezone):
            records.update(collect_device_day(base_url, token, device, day_of(entry), timezone))
    return records
