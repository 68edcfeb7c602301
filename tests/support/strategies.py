"""Hypothesis strategies shared by test modules."""

from __future__ import annotations

from hypothesis import strategies as st


def json_scalars(max_int: int = 2**63 - 1) -> st.SearchStrategy[object]:
    """Any JSON scalar orjson writes: null, a bool, an integer down to -2**63, a finite
    float, a short text."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), max_int),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    )
