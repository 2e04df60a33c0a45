"""Values drawn from a JSON schema (pydantic's, or /openapi.json's), valid or broken in one way."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.support.fuzz.values import any_text, json_values, repeated, weighted


def from_schema(
    schema: dict[str, Any],
    defs: dict[str, Any],
    semantic: dict[str, st.SearchStrategy[Any]],
    name: str | None = None,
) -> st.SearchStrategy[Any]:
    """Valid values of the subset of JSON schema pydantic emits for our models; a property whose
    name is in `semantic` also draws from the values that mean something to the server (real
    tokens, real publication ids, real SDP)."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, semantic, name)
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema["oneOf"]
        plain = st.one_of(*(from_schema(s, defs, semantic) for s in options))
    elif "const" in schema:
        plain = st.just(schema["const"])
    elif "enum" in schema:
        plain = st.sampled_from(schema["enum"])
    else:
        plain = _typed(schema, defs, semantic)
    if name is not None and name in semantic:
        return weighted((2, semantic[name]), (1, plain))
    return plain


EDGE_DATETIMES = (
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-23:59",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2030-02-30T10:00:00Z",
    "2030-01-01T10:00:00+24:00",
    "2030-01-01T25:00:00Z",
    "2030-01-01",
    "0",
    "-1",
    "253402300800",
    "-62135596801",
    "1e20",
)


def edge_datetimes() -> st.SearchStrategy[Any]:
    """Date-times at and past the edges of what Python and the store can represent."""
    aware = st.datetimes(timezones=st.timezones() | st.just(None)).map(lambda d: d.isoformat())
    return st.one_of(
        st.sampled_from(EDGE_DATETIMES),
        aware,
        st.integers(-(10**13), 10**13),
        st.floats(allow_nan=False, allow_infinity=False),
    )


def _typed(
    schema: dict[str, Any], defs: dict[str, Any], semantic: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind == "string" and schema.get("format") == "date-time":
        return edge_datetimes()
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 200)
        if "pattern" in schema and "format" not in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: low <= len(s) <= high
            )
        return st.one_of(
            st.text(min_size=low, max_size=min(high, 60)),
            repeated(("x", max(low, 1)), ("é", high), ("a", high)),
        )
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs, semantic), max_size=3)
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs, semantic, k) for k, v in properties.items() if k in required},
            optional={
                k: from_schema(v, defs, semantic, k)
                for k, v in properties.items()
                if k not in required
            },
        )
    return json_values()


@st.composite
def mutated(
    draw: st.DrawFn, message: st.SearchStrategy[dict[str, Any]], types: list[str]
) -> tuple[dict[str, Any], str]:
    """A valid message, or one broken in one way: (message, how it was broken)."""
    value = dict(draw(message))
    how = draw(
        st.sampled_from(
            ["valid"] * 5 + ["drop", "extra", "junk", "long", "retype", "weird-id", "nested"]
        )
    )
    keys = sorted(value)
    if how == "drop" and keys:
        del value[draw(st.sampled_from(keys))]
    elif how == "extra":
        value[draw(any_text(12))] = draw(json_values())
    elif how == "junk" and keys:
        value[draw(st.sampled_from(keys))] = draw(json_values())
    elif how == "long" and keys:
        unit = draw(st.sampled_from(["x", "é", "😀", "\x00", "\\"]))
        length = draw(st.integers(60, 9_000) | st.integers(9_000, 80_000))
        value[draw(st.sampled_from(keys))] = unit * length
    elif how == "retype":
        value["type"] = draw(st.sampled_from(types) | any_text(20))
    elif how == "weird-id":
        value["id"] = draw(
            st.one_of(
                st.floats(),
                st.booleans(),
                st.lists(st.integers(), max_size=2),
                st.text(min_size=65, max_size=80),
                st.integers(min_value=2**64),
                st.just({"$gt": ""}),
            )
        )
    elif how == "nested" and keys:
        depth = draw(st.integers(2, 400))
        value[draw(st.sampled_from(keys))] = json.loads("[" * depth + "]" * depth)
    return value, how
