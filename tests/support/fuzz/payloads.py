"""One frame or body as text or bytes (`Payload`), and strategies of text that is not the JSON
object a parser expects."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from tests.support.fuzz.values import dumps, json_values


@dataclass(frozen=True)
class Payload:
    """One frame or body: text or bytes, with a short name of what it is for grouping."""

    data: str | bytes
    kind: str
    """e.g. `ping`, `offer`, `json:deep-array`, `binary`: failures are grouped by it."""
    recipe: str = ""
    """A Python expression that rebuilds `data` when it is too long to print."""

    @property
    def size(self) -> int:
        return len(self.data.encode() if isinstance(self.data, str) else self.data)

    def describe(self) -> str:
        """Exact: a Python literal of the data, or the expression that builds it."""
        if self.recipe:
            return self.recipe
        return ("binary " if isinstance(self.data, bytes) else "") + repr(self.data)


def hostile_json_texts() -> st.SearchStrategy[Payload]:
    """Text that is not a well-formed JSON object, or is one only a lenient parser accepts."""
    return st.one_of(
        st.text(max_size=120).map(lambda t: Payload(t, "text")),
        st.integers(2, 120_000).map(
            lambda n: Payload("[" * n + "]" * n, "json:deep-array", f"'[' * {n} + ']' * {n}")
        ),
        st.integers(2, 40_000).map(
            lambda n: Payload(
                '{"a":' * n + "1" + "}" * n,
                "json:deep-object",
                f"'{{\"a\":' * {n} + '1' + '}}' * {n}",
            )
        ),
        st.integers(4_290, 40_000).map(
            lambda n: Payload(
                '{"type":"ping","id":' + "9" * n + "}",
                "json:huge-number",
                f"'{{\"type\":\"ping\",\"id\":' + '9' * {n} + '}}'",
            )
        ),
        json_values().map(lambda v: Payload(dumps(v), "json:not-an-object")),
        st.sampled_from(
            [
                '{"type":"ping","type":"join"}',
                '{"type":"ping"}x',
                '{"type":"ping"} {"type":"ping"}',
                "\ufeff" + '{"type":"ping"}',
                "NaN",
                "-Infinity",
                '{"type":"ping","id":NaN}',
                '{"type":"ping","id":1e400}',
                '{"type":"ping","id":-0}',
                '{"type":"ping","id":"\\ud800"}',
                '{"type":"ping","id":"\\u0000"}',
                '{"type":"\\u0070ing"}',
                '{"type":"ping",}',
                "{'type':'ping'}",
                '{"type":"ping"',
                "",
                " ",
                "\x00",
                "null",
                "[]",
                "{}",
                '{"type":null}',
                '{"type":["ping"]}',
                '{"type":{"ping":1}}',
                '{"type":1}',
                '{"__proto__":{"type":"ping"}}',
            ]
        ).map(lambda t: Payload(t, "json:lenient")),
    )


def binary_payloads(texts: st.SearchStrategy[Payload]) -> st.SearchStrategy[Payload]:
    return st.one_of(
        st.binary(max_size=300).map(lambda b: Payload(b, "binary")),
        st.sampled_from([b"\xff\xfe\x00", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00" * 64]).map(
            lambda b: Payload(b, "binary")
        ),
        st.tuples(
            texts, st.sampled_from(["utf-8", "utf-16", "utf-32", "utf-16-be", "latin-1"])
        ).map(
            lambda pair: Payload(
                pair[0].data.encode(pair[1], "replace")
                if isinstance(pair[0].data, str)
                else pair[0].data,
                f"binary:{pair[0].kind}",
                f"({pair[0].describe()}).encode({pair[1]!r})" if pair[0].recipe else "",
            )
        ),
    )
