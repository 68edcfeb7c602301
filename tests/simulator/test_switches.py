"""The switches that flip one assumption each: bounds, order, over-cap, envelope, date style."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from dataclasses import replace
from typing import Any

import pytest

from harvester.cli import simulate
from harvester.simulator.data import SimulatedData
from harvester.simulator.options import SWITCHES, SimulatorOptions
from tests.simulator.conftest import Api, api_for
from tests.support import plain_client
from tests.support.simproc import SimFactory

RECORDS = "/sensors-data/get{}DeviceLogForGivenHour"
DATE_PATTERNS = {
    "iso-ms": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$"),
    "iso-s": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"),
    "space": re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"),
}


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


async def _answer(api: Api, start: str, end: str, uuid: str = "1001") -> tuple[int, Any]:
    body = {"DeviceId": uuid, "DeviceType": "FMD", "StartDate": start, "EndDate": end}
    return await api.post(RECORDS.format("FMD"), body)


def _records(body: bytes) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(body)["data"]
    return records


@pytest.mark.parametrize(
    ("bounds", "hours"),
    [("inclusive", [6, 5, 4]), ("half-open", [5, 4]), ("exclusive", [5])],
)
async def test_bounds_decide_which_records_on_a_windows_ends_it_holds(
    bounds: str, hours: list[int]
) -> None:
    """With hourly records, 04:00..06:00 holds both ends, only the start, or neither."""
    async with api_for(days=3, cadence_s=3600, bounds=bounds) as api:
        status, answer = await _answer(api, "2024-01-02 04:00:00", "2024-01-02 06:00:00")
        assert status == 200
        assert [_instant(r["date"]).hour for r in answer["data"]] == hours


@pytest.mark.parametrize(("span_s", "path"), [(1_800, "blocks"), (7_200, "exact render")])
def test_oldest_first_serves_the_same_records_in_ascending_order(span_s: int, path: str) -> None:
    """Both ways of assembling a window (block slices, exact render), across the firmware
    update where the records change shape, give the newest-first records reversed."""
    options = SimulatorOptions(devices=3, days=3, cadence_s=1)
    newest, oldest = SimulatedData(options), SimulatedData(replace(options, order="oldest"))
    for device in newest.devices:
        change = device.firmware_change
        assert change is not None
        low, high = change - span_s // 2, change + span_s // 2
        body, count = newest.window(device, low, high)
        reversed_body, reversed_count = oldest.window(device, low, high)
        assert count == reversed_count == span_s + 1, path
        assert _records(reversed_body) == _records(body)[::-1]


async def test_over_cap_rejects_by_default_and_truncate_answers_the_first_hours() -> None:
    """A 3-hour window: 400 by default; with truncate, exactly the 2-hour window's answer."""
    window = ("2024-01-02 04:00:00", "2024-01-02 07:00:00")
    async with api_for(days=3, cadence_s=600) as api:
        status, answer = await _answer(api, *window)
        assert status == 400
        assert "at most 2 h" in answer["message"]
    async with api_for(days=3, cadence_s=600, over_cap="truncate") as api:
        status, truncated = await _answer(api, *window)
        assert status == 200
        _, capped = await _answer(api, "2024-01-02 04:00:00", "2024-01-02 06:00:00")
        assert truncated == capped
        assert len(capped["data"]) == 13


async def test_bare_envelope_serves_the_records_as_a_json_array() -> None:
    """With envelope bare, a window (empty or not) is a bare array of the same records."""
    window = ("2024-01-02 04:00:00", "2024-01-02 06:00:00")
    async with api_for(days=3, cadence_s=600) as api:
        _, wrapped = await _answer(api, *window)
    async with api_for(days=3, cadence_s=600, envelope="bare") as api:
        status, bare = await _answer(api, *window)
        assert status == 200
        assert bare == wrapped["data"]
        assert await _answer(api, *window, uuid="no-such-device") == (200, [])
        assert await _answer(api, "2024-01-09 04:00:00", "2024-01-09 06:00:00") == (200, [])


@pytest.mark.parametrize("style", ["iso-ms", "iso-s", "space"])
async def test_date_style_writes_every_date_the_service_sends(style: str) -> None:
    """Records, the last received record and the available dates' ``date`` all take the
    style, and name the same instants as the default style does."""
    window = ("2024-01-02 04:00:00", "2024-01-02 06:00:00")
    async with api_for(days=3, cadence_s=600) as api:
        _, default = await _answer(api, *window)
    async with api_for(days=3, cadence_s=600, date_style=style) as api:
        _, styled = await _answer(api, *window)
        devices = await api.devices()
        dates = await api.dates("1001", "FMD")
    texts = [r["date"] for r in styled["data"]]
    texts += [d["lastReceivedRecord"]["date"] for d in devices] + [d["date"] for d in dates]
    assert all(DATE_PATTERNS[style].match(text) for text in texts), texts[:3]
    assert [_instant(r["date"]) for r in styled["data"]] == [
        _instant(r["date"]) for r in default["data"]
    ]
    assert [{**r, "date": None} for r in styled["data"]] == [
        {**r, "date": None} for r in default["data"]
    ]


@pytest.mark.parametrize("style", ["iso-s", "space"])
def test_date_style_is_the_same_in_small_and_big_windows(style: str) -> None:
    """A record's text does not depend on which renderer (per value or vectorised) wrote it."""
    data = SimulatedData(SimulatorOptions(devices=1, days=2, cadence_s=1, date_style=style))
    device = data.devices[0]
    start = (device.timeline.first or 0) + 3_600
    big = _records(data.window(device, start, start + 7_200)[0])
    small = _records(data.window(device, start + 7_190, start + 7_200)[0])
    assert big[:11] == small
    assert all(DATE_PATTERNS[style].match(r["date"]) for r in big)


def test_each_switch_refuses_an_unknown_value_naming_its_option() -> None:
    """A value outside a switch's choices is one problem naming the option."""
    for flag, name, choices in SWITCHES:
        unknown: dict[str, Any] = {name: "sideways"}
        problems = replace(SimulatorOptions(), **unknown).problems()
        assert problems == [f"{flag} must be one of {', '.join(choices)}; got 'sideways'"]


def test_the_cli_passes_every_switch_to_the_options() -> None:
    """``harvester simulate`` flags become the fields; without them the defaults hold."""
    parser = argparse.ArgumentParser(prog="harvester")
    simulate.register(parser.add_subparsers(dest="command"))
    assert simulate.options_of(parser.parse_args(["simulate"])) == SimulatorOptions()
    flags = [
        "--bounds=half-open",
        "--order=oldest",
        "--over-cap=truncate",
        "--envelope=bare",
        "--date-style=space",
    ]
    options = simulate.options_of(parser.parse_args(["simulate", *flags]))
    assert (options.bounds, options.order, options.over_cap) == ("half-open", "oldest", "truncate")
    assert (options.envelope, options.date_style) == ("bare", "space")


def test_the_switched_process_serves_what_its_flags_say(simulator: SimFactory) -> None:
    """A ``harvester simulate`` process started with switches answers accordingly."""
    sim = simulator("--order", "oldest", "--envelope", "bare", "--date-style", "iso-s", days=2)
    login = plain_client.sign_in(sim.url, "demo@example.com", "demo")
    body = {
        "DeviceId": "1001",
        "DeviceType": "FMD",
        "StartDate": "2024-01-01 04:00:00",
        "EndDate": "2024-01-01 05:00:00",
    }
    records = plain_client.call(sim.url, "POST", RECORDS.format("FMD"), login["accessToken"], body)
    assert [r["date"] for r in records[:2]] == ["2024-01-01T04:00:00Z", "2024-01-01T04:01:00Z"]
    assert len(records) == 61
