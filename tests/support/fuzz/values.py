"""Primitive hostile values: strings, numbers and JSON past every limit, and how to weight them."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")


NASTY_STRINGS = (
    "",
    " ",
    "\x00",
    "\u202e",
    "\ufeff",
    "null",
    "undefined",
    "NaN",
    "-1",
    "0",
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "\ud800",
    "\udfff\ud800",
)


def repeated(*units_and_counts: tuple[str, int]) -> st.SearchStrategy[str]:
    """`unit * count` for the given pairs (built when drawn: hypothesis keeps reprs short)."""
    return st.sampled_from(units_and_counts).map(lambda pair: pair[0] * pair[1])


def weighted(*options: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of the strategies, with these relative weights (st.one_of ignores repeats: it keeps
    each strategy object once)."""
    slots = [index for index, (weight, _) in enumerate(options) for _ in range(weight)]
    return st.sampled_from(slots).flatmap(lambda index: options[index][1])


def any_text(max_size: int = 40, *, long: bool = True) -> st.SearchStrategy[str]:
    """Any unicode, lone surrogates included (frames are dumped with ensure_ascii); `long`
    adds strings past every length limit (up to 9000 characters)."""
    text = st.text(max_size=max_size) | st.sampled_from(NASTY_STRINGS)
    if long:
        text |= repeated(("😀", 20), ("ﷺ", 30), ("a", 65), ("a", 256), ("a", 9000))
    return text


def json_scalars(*, long: bool = True) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=2**63 - 2, max_value=2**200),
        st.integers(min_value=-(2**200), max_value=-(2**63) + 2),
        st.floats(),
        any_text(long=long),
    )


def json_values(max_leaves: int = 8, *, long: bool = True) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars(long=long),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(any_text(10, long=False), children, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def dumps(value: Any, ascii_only: bool = True) -> str:
    """JSON text of `value`; ASCII-escaped when asked for or when it holds lone surrogates."""
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
        text.encode()
        return text
    except UnicodeEncodeError:
        return json.dumps(value)


def recursion_safe_dumps(value: Any) -> str:
    """`dumps`, or the JSON string of its repr when it is nested too deep to dump."""
    try:
        return dumps(value)
    except RecursionError:
        return json.dumps(str(value))
