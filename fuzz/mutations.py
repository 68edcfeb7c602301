"""The fuzzer's seed bodies and its mutations, which know JSON's structure and the reader's
edges: where a number turns into a float or overflows, where a date stops being plain
ISO-8601, where a body passes the bounds of ``harvester.records.limits`` (depth, fields, cells)."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable

import numpy as np
import orjson

# Bodies up to this size join the corpus (larger ones are still tried, once).
MAX_KEPT = 64 * 1024
MAX_BODY = 2 * 1024 * 1024

_STRUCTURAL = b'{}[]",:\\ \t\n'
_BYTES = _STRUCTURAL + b"0123456789.-+eEtrufalsn\x00\x1f\x7f\xc3\xa9\xe2\x82\xac\xed\xa0\xf4\xff"
_TOKENS = [
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-0.0",
    b"1e5",
    b"1E+2",
    b'""',
    b'"x"',
    b"{}",
    b"[]",
    b'{"a":1}',
    b"[1,2]",
    b'"\\u00e9"',
    b'"\\""',
    b'"date"',
    b'"_id"',
    b'"2024-01-01T00:00:00Z"',
    b'"2024-01-01"',
    '"é"'.encode(),
    b'"\xf0\x9f\x98\x80"',
]
_NUMBERS = [
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"123456789012345678901234567890",
    b"1e22",
    b"1e23",
    b"9007199254740993",
    b"9007199254740993.0",
    b"4.9e-324",
    b"2.4703282292062327e-324",
    b"2.2250738585072014e-308",
    b"1.7976931348623157e308",
    b"1.7976931348623159e308",
    b"1e309",
    b"0.1",
    b"0.30000000000000004",
    b"1.0",
    b"00",
    b"01",
    b"-",
    b"1.",
    b".5",
    b"1e",
    b"1e+",
    b"0e0",
    b"1234567890.1234567890123",
    b"0.000000000000000000001",
]
_DATES = [
    b'"2024-02-29T23:59:59.999+23:59"',
    b'"2023-02-29T00:00:00Z"',
    b'"0001-01-01T00:00:00Z"',
    b'"0001-01-01T00:00:00+00:01"',
    b'"9999-12-31T23:59:59.999-23:59"',
    b'"2024-01-01T24:00:00Z"',
    b'"2024-01-01T00:00:60Z"',
    b'"2024-01-01T00:00:00.1Z"',
    b'"2024-01-01T00:00:00.123456Z"',
    b'"2024-01-01T00:00:00"',
    b'"2024-01-01 00:00:00"',
    b'"2024-01-01T00:00:00+0100"',
    b'"2024-01-01T00:00:00z"',
    b'"2024-13-01T00:00:00Z"',
    b'"2024-01-01T00:00:00.000+24:00"',
    b'"2024-01-01"',
]
_KEY_VALUE = re.compile(rb'"[^"\\]{0,40}":(?:"[^"\\]{0,40}"|[^,{}\[\]"]{1,40})')
_NUMBER = re.compile(rb"-?\d[\d.eE+-]*")
_TEXT = re.compile(rb'"[^"\\]{0,60}"')
_DATE_VALUE = re.compile(rb'"date":"[^"]*"')
_COLON = re.compile(rb":")


def seeds() -> list[bytes]:
    """Simulator windows of every device type, before and after the firmware change, and
    hand-made bodies at the edges of what the reader accepts."""
    from harvester.simulator.fleet import build_fleet
    from harvester.simulator.options import SimulatorOptions
    from harvester.simulator.records import window_body

    bodies = []
    start = 1_700_000_000
    for device in build_fleet(SimulatorOptions(devices=3)):
        for change in (None, start + 2):
            shaped = dataclasses.replace(device, firmware_change=change)
            for count in (1, 4, 40):
                times = np.arange(start, start + count, dtype=np.int64)
                bodies.append(window_body(shaped, times))
    record: dict[str, object] = {"_id": "a", "date": "2024-01-01T00:00:00.000Z"}
    edge_records: list[list[dict[str, object]]] = [
        [],
        [record],
        [record, {**record, "_id": "b", "v": None}, {**record, "_id": "c", "v": 2.5}],
        [{**record, "flag": True}, {**record, "flag": False}, {**record, "flag": None}],
        [{**record, "n": -(2**63)}, {**record, "n": 2**63 - 1}],
        [{**record, "ünï": "ü€😀", "": ""}],
        [record | {f"f{k}": k * 0.5 if k % 2 else k for k in range(40)}],
        [{**record, "date": "2024-02-05T23:00:01+01:00"}, {**record, "date": "2024-02-05T22Z"}],
        [{**record, "nested": {"a": [1, {"b": None}]}}],
        [{**record, "t": "{[" * 40}],
    ]
    bodies += [orjson.dumps({"data": records}) for records in edge_records]
    # The bare array a server may answer instead of the envelope (issue 14).
    bodies += [orjson.dumps(records) for records in edge_records[1:4]]
    bodies += [
        b' { "data" : [ { "_id" : "a" , "date" : "2024-01-01T00:00:00Z" , "v" : 1 } ] } ',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":"a\\"b"}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z"}],"next":null}',
        b'{"data":[{}, {}]}',
        b'{"data":[null]}',
        b' [ { "_id" : "a" , "date" : "2024-01-01T00:00:00Z" } ] , "x" : 1',
        orjson.dumps({"data": [{**record, "_id": f"{i:024x}", "v": i} for i in range(3000)]}),
    ]
    return bodies


def _cut(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    return body[: rng.randrange(len(body) + 1)]


def _flip(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    if not body:
        return bytes([rng.choice(_BYTES)])
    at = rng.randrange(len(body))
    byte = rng.choice(_BYTES) if rng.random() < 0.8 else rng.randrange(256)
    return body[:at] + bytes([byte]) + body[at + 1 :]


def _insert(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    at = rng.randrange(len(body) + 1)
    piece = rng.choice(_TOKENS) if rng.random() < 0.5 else bytes([rng.choice(_BYTES)])
    return body[:at] + piece + body[at:]


def _delete(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    at = rng.randrange(len(body) + 1)
    return body[:at] + body[at + rng.randrange(1, 16) :]


def _find(rng: random.Random, pattern: re.Pattern[bytes], body: bytes) -> re.Match[bytes] | None:
    """A match of ``pattern`` at or after a random place (or the first one), not listing
    every match of a large body."""
    return pattern.search(body, rng.randrange(len(body) + 1)) or pattern.search(body)


def _repeat_key(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    pair = _find(rng, _KEY_VALUE, body)
    if pair is None:
        return body
    return body[: pair.end()] + b"," + pair.group() + body[pair.end() :]


def _nest(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    colon = _find(rng, _COLON, body)
    at = len(body) if colon is None else colon.end()
    depth = rng.choice([1, 2, 10, 59, 60, 61, 62, 63, 64, 65, 200, 100_000])
    if rng.random() < 0.5:
        nested = b"[" * depth + b"1" + b"]" * depth
    else:
        nested = b'{"a":' * depth + b"1" + b"}" * depth
    if rng.random() < 0.2:
        nested = nested[: rng.randrange(len(nested) + 1)]
    end = at
    while end < len(body) and body[end] not in b",}]":
        end += 1
    return body[:at] + nested + body[end:]


def _long_text(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    text = _find(rng, _TEXT, body)
    if text is None:
        return body
    unit = rng.choice([b"x", b"{", b"[", b"\xc3\xa9", b"2024-01-01", b" ", b":"])
    long = b'"' + unit * rng.choice([1, 100, 4095, 4096, 70_000, 300_000]) + b'"'
    return body[: text.start()] + long + body[text.end() :]


def _many_fields(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    at = body.find(b"{", body.find(b"[") + 1) + 1
    if at <= 0:
        return body
    count = rng.choice([1, 31, 32, 33, 64, 500, 4093, 4094, 4095, 4096, 4097])
    kind = rng.choice([b"1", b"0.5", b'"t"', b"true", b"null"])
    fields = b"".join(b'"f%d":%s,' % (k, kind) for k in range(count))
    return body[:at] + fields + body[at:]


def _many_records(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    start = body.find(b"{", body.find(b"[") + 1)
    end = body.find(b"}", start) + 1
    if start < 0 or end <= 0:
        return body
    record = body[start:end]
    count = rng.choice([2, 63, 64, 65, 1000, 5000])
    return body[:start] + b",".join([record] * count) + body[end:]


def _new_field_a_record(rng: random.Random, _: bytes, __: list[bytes]) -> bytes:
    count = rng.choice([10, 1000, 1999, 2000, 2001, 2500])
    value = rng.choice([b"1", b'"x"', b"null", b"0.5"])
    records = b",".join(
        b'{"_id":"%d","date":"2024-01-01T00:00:00Z","k%d":%s}' % (i, i, value) for i in range(count)
    )
    return b'{"data":[' + records + b"]}"


def _splice(rng: random.Random, body: bytes, corpus: list[bytes]) -> bytes:
    other = rng.choice(corpus)
    return body[: rng.randrange(len(body) + 1)] + other[rng.randrange(len(other) + 1) :]


def _number(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    number = _find(rng, _NUMBER, body)
    if number is None:
        return body
    return body[: number.start()] + rng.choice(_NUMBERS) + body[number.end() :]


def _date(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    date = _find(rng, _DATE_VALUE, body)
    if date is None:
        return body
    return body[: date.start()] + b'"date":' + rng.choice(_DATES) + body[date.end() :]


def _kind(rng: random.Random, body: bytes, _: list[bytes]) -> bytes:
    value = _find(rng, rng.choice([_NUMBER, _TEXT]), body)
    if value is None:
        return body
    return body[: value.start()] + rng.choice(_TOKENS) + body[value.end() :]


_Mutation = Callable[[random.Random, bytes, list[bytes]], bytes]
# Mostly small edits; the costly ones (large bodies, many cells) rarely.
_MUTATIONS: list[tuple[_Mutation, int]] = [
    (_cut, 6),
    (_flip, 20),
    (_insert, 20),
    (_delete, 8),
    (_repeat_key, 6),
    (_nest, 4),
    (_long_text, 2),
    (_many_fields, 2),
    (_many_records, 1),
    (_new_field_a_record, 1),
    (_splice, 6),
    (_number, 12),
    (_date, 8),
    (_kind, 10),
]
_FUNCTIONS = [mutation for mutation, _ in _MUTATIONS]
_WEIGHTS = [weight for _, weight in _MUTATIONS]


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    """One to four mutations of a corpus body, recent finds a little favoured."""
    index = len(corpus) - 1 - min(int(rng.expovariate(1 / 64)), len(corpus) - 1)
    body = corpus[index] if rng.random() < 0.5 else rng.choice(corpus)
    for mutation in rng.choices(_FUNCTIONS, _WEIGHTS, k=rng.randint(1, 4)):
        body = mutation(rng, body, corpus)
        if len(body) > MAX_BODY:
            body = body[:MAX_BODY]
    return body
