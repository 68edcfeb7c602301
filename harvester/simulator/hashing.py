"""Counter-based pseudo-randomness: the same inputs give the same bits in every process.

The simulator never keeps a random stream: every value is a pure function of
``(seed, device, field, time)``, so any window can be generated in any order, by any
process, and agree with every other window. The mixer is SplitMix64's finaliser.
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np
import numpy.typing as npt

_MASK: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
_M1: Final = 0xBF58476D1CE4E5B9
_M2: Final = 0x94D049BB133111EB

U64Array = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float64]


def mix64(*parts: int) -> int:
    """Hash a few integers into 64 well-mixed bits."""
    state = 0
    for part in parts:
        state = (state + (part & _MASK) + _GOLDEN) & _MASK
        state ^= state >> 30
        state = (state * _M1) & _MASK
        state ^= state >> 27
        state = (state * _M2) & _MASK
        state ^= state >> 31
    return state


def text_key(text: str | bytes) -> int:
    """A stable 64-bit integer for a string (Python's ``hash`` is salted per process)."""
    data = text.encode() if isinstance(text, str) else text
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def unit(*parts: int) -> float:
    """A uniform float in [0, 1) determined by ``parts``."""
    return (mix64(*parts) >> 11) * 2.0**-53


def mix64_array(key: int, counters: npt.NDArray[np.int64]) -> U64Array:
    """64 mixed bits per counter, determined by ``(key, counter)``; vectorised.

    Counters are spread by the golden-ratio multiplier first (as SplitMix64 does), so that
    neighbouring counters share no bits before the finaliser. Unsigned wrap-around intended.
    """
    state = counters.astype(np.uint64) * np.uint64(_GOLDEN) + np.uint64(mix64(key))
    state ^= state >> np.uint64(30)
    state *= np.uint64(_M1)
    state ^= state >> np.uint64(27)
    state *= np.uint64(_M2)
    state ^= state >> np.uint64(31)
    return state


def unit_array(key: int, counters: npt.NDArray[np.int64]) -> FloatArray:
    """A uniform float in [0, 1) per counter, determined by ``(key, counter)``."""
    return (mix64_array(key, counters) >> np.uint64(11)).astype(np.float64) * 2.0**-53
