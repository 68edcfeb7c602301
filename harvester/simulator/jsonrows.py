"""Serialise whole columns into JSON text without one Python object per value.

A window's records are rendered into one ``uint8`` matrix, one row per record: every field
has a fixed-width cell (numbers right-aligned and padded with spaces, which is legal JSON
whitespace) written column by column with vectorised digit arithmetic, between constant key
text. The body is then a single ``ndarray.tobytes()``. Numbers keep their JSON type:
integers are written without a decimal point, fractional fields always with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.uint8]
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ZERO, _SPACE, _MINUS, _POINT, _QUOTE = (ord(c) for c in '0 -."')


class Cell(Protocol):
    """One field of every record: a fixed width and a way to fill its columns."""

    @property
    def width(self) -> int: ...

    def write(self, out: Matrix) -> None:
        """Fill ``out`` (rows x ``width``) with this field's JSON text."""


def _write_digits(out: Matrix, values: npt.NDArray[np.int64], count: int) -> None:
    """Zero-padded decimal digits of non-negative ``values`` into the ``count`` columns."""
    rest = values.copy()
    for column in range(count - 1, -1, -1):
        out[:, column] = _ZERO + rest % 10
        rest //= 10


@dataclass(frozen=True, slots=True)
class Number:
    """Numbers rounded to ``decimals`` places (0: integers); rows in ``null`` become null."""

    values: npt.NDArray[np.float64]
    decimals: int = 0
    null: npt.NDArray[np.bool_] | None = None

    @property
    def _int_digits(self) -> int:
        largest = float(np.abs(self.values).max()) if len(self.values) else 0.0
        return max(1, len(str(int(round(largest, self.decimals)))))

    @property
    def width(self) -> int:
        # A spare leading column keeps room for a minus sign.
        width = 1 + self._int_digits + (1 + self.decimals if self.decimals else 0)
        return width if self.null is None else max(width, 4)

    def write(self, out: Matrix) -> None:
        scaled = np.rint(np.abs(self.values) * 10**self.decimals).astype(np.int64)
        negative = (self.values < 0) & (scaled > 0)
        right = out.shape[1]
        if self.decimals:
            _write_digits(out[:, right - self.decimals :], scaled, self.decimals)
            out[:, right - self.decimals - 1] = _POINT
            right -= self.decimals + 1
            scaled //= 10**self.decimals
        out[:, right - 1] = _ZERO + scaled % 10
        rest = scaled // 10
        signed = ~negative
        for column in range(right - 2, -1, -1):
            blank = rest == 0
            sign_here = blank & ~signed
            out[:, column] = np.where(blank, _SPACE, _ZERO + rest % 10)
            out[sign_here, column] = _MINUS
            signed |= sign_here
            rest //= 10
        if self.null is not None:
            out[self.null] = _SPACE
            out[self.null, -4:] = np.frombuffer(b"null", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Boolean:
    """``true`` / `` false`` per row."""

    truth: npt.NDArray[np.bool_]
    width: int = 5

    def write(self, out: Matrix) -> None:
        table = np.frombuffer(b"false true", dtype=np.uint8).reshape(2, 5)
        out[:] = table[self.truth.astype(np.int64)]


@dataclass(frozen=True, slots=True)
class Text:
    """The same (already JSON-encoded) text in every row, e.g. ``"1001"`` with its quotes."""

    text: str

    @property
    def width(self) -> int:
        return len(self.text.encode())

    def write(self, out: Matrix) -> None:
        out[:] = np.frombuffer(self.text.encode(), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class ObjectId:
    """``"tttttttt" + stem + "cccccc"``: 8 hex of the epoch second, a device stem, a counter."""

    times: npt.NDArray[np.int64]
    stem: str
    counters: npt.NDArray[np.int64]

    @property
    def width(self) -> int:
        return 2 + 8 + len(self.stem) + 6

    def write(self, out: Matrix) -> None:
        out[:, 0] = out[:, -1] = _QUOTE
        for digit in range(8):
            out[:, 1 + digit] = _HEX[(self.times >> (4 * (7 - digit))) & 15]
        stem_end = 9 + len(self.stem)
        out[:, 9:stem_end] = np.frombuffer(self.stem.encode(), dtype=np.uint8)
        for digit in range(6):
            out[:, stem_end + digit] = _HEX[(self.counters >> (4 * (5 - digit))) & 15]


@dataclass(frozen=True, slots=True)
class IsoTime:
    """``"2024-02-05T22:00:00.000Z"`` for epoch seconds (UTC, milliseconds always zero)."""

    times: npt.NDArray[np.int64]
    width: int = 26

    def write(self, out: Matrix) -> None:
        days = (self.times // 86_400).astype("datetime64[D]")
        months = days.astype("datetime64[M]")
        year = days.astype("datetime64[Y]").astype(np.int64) + 1970
        month = months.astype(np.int64) % 12 + 1
        day = (days - months).astype(np.int64) + 1
        second = self.times % 86_400
        out[:] = np.frombuffer(b'"0000-00-00T00:00:00.000Z"', dtype=np.uint8)
        for start, count, values in (
            (1, 4, year),
            (6, 2, month),
            (9, 2, day),
            (12, 2, second // 3600),
            (15, 2, second // 60 % 60),
            (18, 2, second % 60),
        ):
            _write_digits(out[:, start : start + count], values, count)


def render(rows: int, fields: Sequence[tuple[str, Cell]]) -> bytes:
    """``{"data":[...]}`` with one record per row, its ``fields`` (key, cell) in order."""
    if rows == 0 or not fields:
        return b'{"data":[]}'
    keys = [f'{"{" if n == 0 else ","}"{key}":'.encode() for n, (key, _) in enumerate(fields)]
    width = sum(len(key) + cell.width for key, (_, cell) in zip(keys, fields, strict=True)) + 2
    out = np.empty((rows, width), dtype=np.uint8)
    column = 0
    for key, (_, cell) in zip(keys, fields, strict=True):
        out[:, column : column + len(key)] = np.frombuffer(key, dtype=np.uint8)
        column += len(key)
        cell.write(out[:, column : column + cell.width])
        column += cell.width
    out[:, column:] = np.frombuffer(b"},", dtype=np.uint8)
    return b'{"data":[' + out.tobytes()[:-1] + b"]}"
