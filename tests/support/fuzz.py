"""Hostile input for a running Parloir server: what to send, how to judge each answer, and how to
tell that the server is still healthy afterwards.

Shared by tests/test_fuzz_signaling.py and tests/test_fuzz_api.py (small counts, in `make test`)
and bench/fuzz.py (the full count). Everything talks to a real `parloir serve` subprocess over
loopback; nothing is mocked.

Inputs come from hypothesis strategies, derived where possible from the one inbound schema
(signaling/protocol.py) and the server's own /openapi.json. A run never stops at the first
failure: every input is judged, and each kind of failure is kept with the smallest input that
showed it, so one run reports every bug it met, each with a reproducer.

The judge of a signaling frame is the server's own parser (`parse_client_message`): whatever it
refuses must come back as an `error` with that code and the socket must stay usable; whatever it
accepts may be answered with any documented message. `internal`, an undocumented message or
code, a socket closed outside the documented cases, a reply that never comes, or a traceback in
the server log is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import jwt
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from pydantic import TypeAdapter

import signaling
from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_frame_index
from signaling.chat import BURST as CHAT_BURST
from signaling.chat import RATE_PER_S as CHAT_RATE_PER_S
from signaling.client import ParloirClient
from signaling.connection import MESSAGE_BURST, MESSAGES_PER_S
from signaling.errors import ErrorCode, SignalingError
from signaling.permissions import Role
from signaling.protocol import (
    CLIENT_MESSAGE_TYPES,
    ChatSend,
    ClientMessage,
    parse_chat_message,
    parse_client_message,
)

T = TypeVar("T")

REPLY_TIMEOUT_S = 10.0
"""A frame or request not answered within this is a hang."""
HANG_TIMEOUT_AFTER_FIRST_S = 2.0
"""Once one hang is found, later ones are called after this (a run stays bounded)."""
RESPONSE_TIME_BOUND_S = 5.0
"""A REST answer slower than this is a failure (loopback, nothing else running)."""
HARD_FRAME_FACTOR = 16
"""Frames up to 16x the message limit get an error; beyond, the server closes with 1009."""


# ---- reports ------------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    """What went wrong, in a few words; findings are grouped by it."""
    detail: str
    """What the judge saw, for the smallest reproducer."""
    reproducer: str
    """The smallest input that showed it."""
    count: int = 0


@dataclass
class FuzzReport:
    """What one fuzz area tried and what it found."""

    area: str
    inputs: int = 0
    """Frames or requests actually sent to the server."""
    examples: int = 0
    """Hypothesis examples (one example may send several inputs)."""
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)
    """Benign events worth counting (reconnects after documented closes, rate limiting)."""

    def fail(self, kind: str, detail: str, reproducer: str) -> None:
        finding = self.findings.get(kind)
        if finding is None:
            finding = self.findings[kind] = Finding(kind, detail, reproducer)
        elif len(reproducer) < len(finding.reproducer):
            finding.detail, finding.reproducer = detail, reproducer
        finding.count += 1

    @property
    def failures(self) -> int:
        return sum(f.count for f in self.findings.values())

    def describe(self, width: int = 500) -> str:
        """A summary; reproducers longer than `width` are elided (as_json keeps them whole)."""
        lines = [
            f"{self.area}: {self.inputs} inputs in {self.examples} examples, {self.seconds:.1f} s,"
            f" {self.failures} failures of {len(self.findings)} kinds"
        ]
        for finding in sorted(self.findings.values(), key=lambda f: f.kind):
            shown = finding.reproducer
            if len(shown) > width:
                shown = f"{shown[: width - 80]} …[{len(shown)} chars]… {shown[-60:]}"
            lines.append(f"  FAIL x{finding.count}: {finding.kind}")
            lines.append(f"      saw:   {finding.detail}")
            lines.append(f"      input: {shown}")
        if self.notes:
            lines.append(
                "  notes: " + ", ".join(f"{k} x{n}" for k, n in sorted(self.notes.items()))
            )
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "inputs": self.inputs,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
            "failures": self.failures,
            "findings": [
                {"kind": f.kind, "count": f.count, "detail": f.detail, "reproducer": f.reproducer}
                for f in self.findings.values()
            ],
            "notes": dict(self.notes),
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> FuzzReport:
        report = cls(entry["area"], entry["inputs"], entry["examples"], entry["seconds"])
        for f in entry["findings"]:
            report.findings[f["kind"]] = Finding(
                f["kind"], f["detail"], f["reproducer"], f["count"]
            )
        report.notes.update(entry.get("notes", {}))
        return report


def explore(
    strategy: st.SearchStrategy[T],
    run_one: Callable[[T], None],
    *,
    examples: int,
    seed: int | None = None,
) -> None:
    """Feed `examples` generated values to `run_one`, which judges and records; never shrinks or
    stops early (a fuzz run reports every failure kind it meets, with its smallest input)."""

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(strategy)
    def property_(value: T) -> None:
        run_one(value)

    if seed is not None:
        property_ = hypothesis_seed(seed)(property_)
    with warnings.catch_warnings():
        # aiortc on the loop thread draws from `random` while hypothesis generates here.
        warnings.filterwarnings(
            "ignore", message=".*random.*", category=HypothesisDeprecationWarning
        )
        property_()


class Hang(Exception):
    """The server did not answer in time."""


class JoinFailed(Exception):
    """A valid join was not answered with `joined`."""


class LoopThread:
    """An event loop on its own thread: hypothesis drives examples synchronously while the
    sockets and aiortc peers live on this loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise Hang(f"no result within {timeout:.0f} s") from exc

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the server's log ---------------------------------------------------------------------------


class LogWatch:
    """New tracebacks and ERROR lines in the server's log since the last look."""

    PATTERN = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_problems(self) -> list[tuple[str, str]]:
        """(what failed, the log line and its exception) for each new ERROR or traceback."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        # Only whole lines; a line still being written is read next time.
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        lines = chunk[:end].decode(errors="replace").splitlines()
        problems: list[tuple[str, str]] = []
        for index, line in enumerate(lines):
            if not self.PATTERN.search(line) or line.startswith("Traceback"):
                continue
            # The exception its traceback ends with names the failure.
            last = next(
                (
                    later
                    for later in lines[index + 1 :]
                    if later and not later.startswith((" ", "Traceback"))
                ),
                "",
            )
            message = re.sub(r"^\S+ \S+ (ERROR|CRITICAL) ", "", line.strip())[:160]
            logger = message.split(":")[0]
            what = re.sub(r"\d+", "N", (last or message)[:80])
            problems.append((f"{what} (logged by {logger})", f"{message} | {last.strip()[:200]}"))
        return problems


# ---- what the protocol documents ----------------------------------------------------------------

PROTOCOL_MD = Path(signaling.__file__).resolve().parent / "PROTOCOL.md"
ERROR_CODES = frozenset(code.value for code in ErrorCode)
CLOSING_ERRORS = frozenset({"token-invalid", "token-expired", "wrong-room"})
"""Errors on `join` after which the server closes the socket with 4401 (PROTOCOL.md)."""


def documented_server_messages() -> frozenset[str]:
    """Types of the `## Server → client` table of PROTOCOL.md: the only messages a client may
    ever receive on the socket."""
    text = PROTOCOL_MD.read_text()
    section = text.split("## Server → client", 1)[1].split("\n## ", 1)[0]
    types = frozenset(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))
    assert {"error", "ack", "joined"} <= types, f"cannot read the server messages of {PROTOCOL_MD}"
    return types


SERVER_MESSAGES = documented_server_messages()
CHAT_MESSAGES = frozenset({"chat-history", "chat", "chat-error"})


def reply_problems(message: Any) -> list[tuple[str, str]]:
    """(kind, detail) for a server message that is not what the protocol documents."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return [("reply is not a JSON object with a type", repr(message)[:200])]
    kind = message["type"]
    if kind == "<not json>":
        return [("reply is not JSON", repr(message.get("raw"))[:200])]
    if kind not in SERVER_MESSAGES:
        return [(f"undocumented server message {kind!r}", repr(message)[:200])]
    if kind == "error":
        code = message.get("code")
        if code == ErrorCode.INTERNAL.value:
            return [("internal error (server fault)", repr(message)[:300])]
        if code not in ERROR_CODES:
            return [(f"undocumented error code {code!r}", repr(message)[:200])]
        if not isinstance(message.get("reason"), str):
            return [("error without a reason", repr(message)[:200])]
    return []


# ---- primitive hostile values -------------------------------------------------------------------

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
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
        text.encode()
        return text
    except UnicodeEncodeError:
        return json.dumps(value)


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


# ---- values from a JSON schema ------------------------------------------------------------------


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


def _recursion_safe_dumps(value: Any) -> str:
    try:
        return dumps(value)
    except RecursionError:
        return json.dumps(str(value))


# ---- signaling ----------------------------------------------------------------------------------

OWN_PUBLICATION = "$own-publication"
"""Placeholder for the fuzzing participant's latest own publication id, filled in when sent."""


@dataclass
class SignalingWorld:
    """Values that mean something to the server, so that generated messages reach past the
    schema: real tokens, real ids of other people's publications, real SDP."""

    room: str
    tokens: list[str]
    publication_ids: list[str]
    participant_ids: list[str]
    sdps: list[str]
    max_message_bytes: int = 64 * 1024


def candidates() -> st.SearchStrategy[str]:
    address = st.sampled_from(
        [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "999.1.1.1",
            "x",
            "",
            "fe80::1%eth0",
        ]
    )
    port = st.integers(-1, 70_000)
    line = st.builds(
        lambda foundation, component, transport, priority, ip, p, typ, extra: (
            f"candidate:{foundation} {component} {transport} {priority} {ip} {p} typ {typ}{extra}"
        ),
        st.sampled_from(["1", "0", "abc", "x" * 40]),
        st.sampled_from(["1", "2", "0", "256", "-1"]),
        st.sampled_from(["udp", "UDP", "tcp", "sctp", "x"]),
        st.sampled_from(["2130706431", "0", "-1", "99999999999999999999"]),
        address,
        port,
        st.sampled_from(["host", "srflx", "relay", "prflx", "x"]),
        st.sampled_from(
            ["", " generation 0", " raddr 127.0.0.1 rport 9", " tcptype passive", " raddr"]
        ),
    )
    realistic = st.builds(
        lambda ip, port, mid: f"candidate:{mid} 1 udp 2130706431 {ip} {port} typ host",
        st.sampled_from(["127.0.0.1", "::1"]),
        st.integers(1, 65535),
        st.sampled_from(["1", "2", "f0"]),
    )
    return weighted(
        (4, realistic),
        (2, line),
        (1, line.map(lambda c: c[len("candidate:") :])),
        (1, st.just("")),
        (1, st.text(max_size=80)),
        (1, st.text(max_size=60).map(lambda t: "candidate:" + t)),
    )


SDP_MUTATIONS = (
    "drop-line",
    "duplicate-line",
    "junk-line",
    "swap-lines",
    "truncate",
    "codec",
    "direction",
    "mid",
    "newlines",
    "fingerprint",
    "port",
    "candidate",
)


class SdpTemplates(tuple[str, ...]):
    """Real SDPs to bend (a short repr: hypothesis prints strategies' arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} SDP templates>"


@st.composite
def sdp_texts(draw: st.DrawFn, templates: SdpTemplates) -> str:
    """A real SDP bent in one to three ways, or junk that starts like one."""
    if draw(st.integers(0, 9)) == 0:
        return "v=0\r\n" + draw(st.text(max_size=200))
    lines = templates[draw(st.integers(0, len(templates) - 1))].split("\r\n")
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(SDP_MUTATIONS))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if not lines:
            break
        if how == "drop-line":
            del lines[i]
        elif how == "duplicate-line":
            lines.insert(i, lines[i])
        elif how == "junk-line":
            lines[i] = draw(
                st.text(max_size=60) | st.sampled_from(["a=", "m=", "m=video", "a=mid:"])
            )
        elif how == "swap-lines":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "truncate":
            lines = lines[:i]
        elif how == "codec":
            codec = draw(st.sampled_from(["FOO", "H265", "opus", "", "VP8", "H264", "rtx"]))
            lines = [re.sub(r"(a=rtpmap:\d+ )[A-Za-z0-9]+", rf"\g<1>{codec}", ln) for ln in lines]
        elif how == "direction":
            direction = draw(st.sampled_from(["sendonly", "recvonly", "inactive", "sendrecv", "x"]))
            lines = [
                f"a={direction}" if ln in ("a=sendonly", "a=recvonly", "a=sendrecv") else ln
                for ln in lines
            ]
        elif how == "mid":
            mid = draw(st.sampled_from(["0", "1", "2", "", "x" * 40, "0 1", "video"]))
            lines = [f"a=mid:{mid}" if ln.startswith("a=mid:") else ln for ln in lines]
        elif how == "newlines":
            return draw(st.sampled_from(["\n", "\r", "\r\r\n", "\n\r"])).join(lines)
        elif how == "fingerprint":
            lines = [
                "a=fingerprint:sha-256 " + draw(st.text(max_size=20))
                if ln.startswith("a=fingerprint")
                else ln
                for ln in lines
            ]
        elif how == "port":
            port = draw(st.sampled_from(["0", "-1", "99999", "x"]))
            lines = [re.sub(r"^(m=\w+ )\d+", rf"\g<1>{port}", ln) for ln in lines]
        elif how == "candidate":
            lines.insert(i, "a=" + draw(candidates()))
    return "\r\n".join(lines)


def _message_schemas(adapter_schema: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    defs = adapter_schema.get("$defs", {})
    options = adapter_schema.get("oneOf") or adapter_schema.get("anyOf") or [adapter_schema]
    return defs, options


def client_messages(world: SignalingWorld) -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """Every client message type of the schema, valid or broken in one way."""
    semantic: dict[str, st.SearchStrategy[Any]] = {
        "token": st.sampled_from(world.tokens),
        "room": st.sampled_from([world.room, "fuzz-elsewhere", world.room.upper()]),
        "publication_id": st.sampled_from([*world.publication_ids, OWN_PUBLICATION]),
        "sdp": sdp_texts(SdpTemplates(world.sdps)),
        "candidate": candidates(),
        "sdp_mid": st.sampled_from(["0", "1", "2", "video"]),
        "audio_mid": st.sampled_from(["0", "1", "2"]),
        "video_mid": st.sampled_from(["0", "1", "2"]),
        "participant_id": st.sampled_from(world.participant_ids),
    }
    defs, options = _message_schemas(TypeAdapter(ClientMessage).json_schema())
    types = sorted(CLIENT_MESSAGE_TYPES)
    per_type = [mutated(from_schema(option, defs, semantic), types) for option in options]
    return st.one_of(*per_type)


def _message_payload(pair: tuple[dict[str, Any], str], ascii_only: bool) -> Payload:
    message, how = pair
    kind = message.get("type") if isinstance(message.get("type"), str) else "?"
    kind = kind if kind in CLIENT_MESSAGE_TYPES else "unknown-type"
    return Payload(
        _recursion_safe_dumps(message) if ascii_only else dumps(message, False),
        f"{kind}" + ("" if how == "valid" else f"/{how}"),
    )


def oversized_payloads(max_bytes: int) -> st.SearchStrategy[Payload]:
    """A ping padded to just below, at and above the message limit and the hard frame limit."""
    hard = max_bytes * HARD_FRAME_FACTOR
    sizes = [max_bytes - 1, max_bytes, max_bytes + 1, 2 * max_bytes, hard, hard + 1, hard + 4096]

    def padded(size: int) -> Payload:
        head = '{"type":"ping","id":"big","pad":"'
        data = head + "x" * max(size - len(head) - 2, 0) + '"}'
        return Payload(
            data,
            "oversized",
            f"'{head}' + 'x' * {max(size - len(head) - 2, 0)} + '\"}}'  # {size} bytes",
        )

    return st.sampled_from(sizes).map(padded)


def signaling_payloads(world: SignalingWorld) -> st.SearchStrategy[Payload]:
    messages = st.tuples(client_messages(world), st.booleans()).map(
        lambda pair: _message_payload(pair[0], pair[1])
    )
    texts = hostile_json_texts()
    return weighted(
        (12, messages),
        (2, texts),
        (2, binary_payloads(messages | texts)),
        (1, oversized_payloads(world.max_message_bytes)),
    )


@st.composite
def scenarios(draw: st.DrawFn, world: SignalingWorld) -> tuple[Payload, ...]:
    """Coherent sequences that reach deep: announce a publication, offer a real (or bent) SDP
    for it, then act on what went live: mute, blur, trickle, renegotiate, unpublish."""
    templates = SdpTemplates(world.sdps)
    audio_mid, video_mid = draw(st.sampled_from([("0", "1"), ("0", None), (None, "1"), ("1", "0")]))
    publish: dict[str, Any] = {"type": "publish", "id": "s-publish"}
    publish["video_type"] = draw(st.sampled_from(["camera", "screen"]))
    if audio_mid:
        publish["audio_mid"] = audio_mid
    if video_mid:
        publish["video_mid"] = video_mid
    real_offer = st.integers(0, 2).map(lambda _: templates[0])
    sdp = draw(real_offer | sdp_texts(templates))
    steps: list[dict[str, Any]] = [
        publish,
        {"type": "offer", "pc": "publisher", "sdp": sdp, "id": "s-offer"},
    ]
    actions = st.one_of(
        st.builds(
            lambda kind, muted: {
                "type": "mute",
                "publication_id": OWN_PUBLICATION,
                "kind": kind,
                "muted": muted,
                "id": "s-mute",
            },
            st.sampled_from(["audio", "video"]),
            st.booleans(),
        ),
        st.builds(
            lambda enabled, strength: {
                "type": "blur",
                "publication_id": OWN_PUBLICATION,
                "enabled": enabled,
                "strength": strength,
                "id": "s-blur",
            },
            st.booleans(),
            st.sampled_from(["low", "high"]),
        ),
        st.builds(
            lambda candidate, mid: {
                "type": "ice",
                "pc": "publisher",
                "candidate": candidate,
                "sdp_mid": mid,
                "id": "s-ice",
            },
            candidates(),
            st.sampled_from(["0", "1", None]),
        ),
        st.builds(
            lambda candidate: {
                "type": "ice",
                "pc": "subscriber",
                "candidate": candidate,
                "id": "s-ice",
            },
            candidates(),
        ),
        st.builds(
            lambda again: {"type": "offer", "pc": "publisher", "sdp": again, "id": "s-reoffer"},
            real_offer | sdp_texts(templates),
        ),
        st.just({"type": "unpublish", "publication_id": OWN_PUBLICATION, "id": "s-unpublish"}),
        st.just({"type": "record", "action": "start", "id": "s-record"}),
    )
    steps += draw(st.lists(actions, max_size=3))
    return tuple(Payload(dumps(step), f"scenario:{step['type']}") for step in steps)


@dataclass(frozen=True)
class SignalingExample:
    joined: bool
    """Sent on a socket that has joined the fuzzed room, or on one that has not."""
    burst: bool
    """Sent back to back without waiting for answers (then judged together)."""
    role: str
    """Role of the joined socket's token, when it has to (re)join."""
    frames: tuple[Payload, ...]

    def describe(self) -> str:
        where = "joined" if self.joined else "not joined"
        how = ", back to back" if self.burst else ""
        frames = "; ".join(f.describe() for f in self.frames)
        return f"[{where} as {self.role}{how}] {frames}"


def signaling_examples(world: SignalingWorld) -> st.SearchStrategy[SignalingExample]:
    return st.builds(
        SignalingExample,
        joined=st.sampled_from([True, True, False]),
        burst=st.integers(0, 7).map(lambda n: n == 0),
        role=st.sampled_from(
            [Role.PUBLISHER.value] * 3 + [Role.SUBSCRIBER.value, Role.PUBLISHER_ONLY.value]
        ),
        frames=weighted(
            (3, st.lists(signaling_payloads(world), min_size=1, max_size=4).map(tuple)),
            (1, scenarios(world)),
        ),
    )


@dataclass(frozen=True)
class Expected:
    """What a correct server does with one frame."""

    errors: frozenset[str] = frozenset()
    """An `error` with one of these codes must come back (empty: none required)."""
    request_id: Any = None
    """...echoing this id."""
    reply: str | None = None
    """A message of this type must come back (`ack` for ping, `left` for leave)."""
    reply_id: Any = None
    close: int | None = None
    """The server must close the socket with this code."""


UNDECODABLE = frozenset({"malformed", "invalid-message", "message-too-large", "unknown-type"})
"""What a frame the parser itself chokes on (too deep, a number too long, a `type` that is a
list) must be refused with: the parser raising anything but SignalingError is the bug."""


def expect_signaling(payload: Payload, *, joined: bool, max_bytes: int) -> Expected:
    if payload.size > max_bytes * HARD_FRAME_FACTOR:
        return Expected(close=1009)
    try:
        message = parse_client_message(payload.data, max_bytes)
    except SignalingError as error:
        return Expected(errors=frozenset({error.code.value}), request_id=error.request_id)
    except Exception:
        return Expected(errors=UNDECODABLE)
    if message.type == "ping":
        return Expected(reply="ack", reply_id=message.id)
    if not joined:
        if message.type == "join":
            return Expected()  # `joined`, or a token error and 4401 (judged on the reply)
        return Expected(errors=frozenset({"not-joined"}), request_id=message.id)
    if message.type == "join":
        # A token error (then 4401) is right too if an earlier frame already cost the socket its
        # participant (a refused subscriber answer drops it; the close follows asynchronously).
        return Expected(errors=frozenset({"already-joined"}) | CLOSING_ERRORS)
    if message.type == "leave":
        return Expected(reply="left", close=1000)
    return Expected()


def judge_signaling(
    expected: Expected | None,
    replies: list[dict[str, Any]],
    close_code: int | None,
    *,
    joined: bool,
) -> list[tuple[str, str]]:
    """(kind, detail) of everything wrong with how the server answered one frame (or, with
    `expected` None, a burst of frames)."""
    problems = [p for reply in replies for p in reply_problems(reply)]
    errors = [r for r in replies if r.get("type") == "error"]
    closing_error = any(e.get("code") in CLOSING_ERRORS for e in errors)
    seen = (
        ", ".join(
            f"{r.get('type')}:{r.get('code')}" if r.get("type") == "error" else str(r.get("type"))
            for r in replies
        )
        or "nothing"
    )
    if any(e.get("code") in ("rate-limited", "internal") for e in errors):
        expected = None  # dropped unread (PROTOCOL.md limits), or already reported as a fault
    if expected is not None:
        if expected.errors:
            match = [e for e in errors if e.get("code") in expected.errors]
            if not match:
                problems.append(
                    (
                        f"expected error {'/'.join(sorted(expected.errors))}",
                        f"got {seen}, close {close_code}",
                    )
                )
            elif expected.request_id is not None and not any(
                e.get("id") == expected.request_id for e in match
            ):
                problems.append(("error does not echo the request id", f"got {match[0]!r}"[:300]))
        if expected.reply and not any(
            r.get("type") == expected.reply and r.get("id") == expected.reply_id for r in replies
        ):
            problems.append((f"expected {expected.reply}", f"got {seen}, close {close_code}"))
    allowed = {expected.close} if expected is not None and expected.close else set()
    if expected is None:
        allowed |= {1000, 1009}
    if closing_error:
        allowed.add(4401)
    if not joined:
        allowed.add(4408)  # the join deadline (PROTOCOL.md)
    if close_code is None:
        if expected is not None and expected.close is not None:
            problems.append((f"socket not closed with {expected.close}", f"got {seen}"))
        elif closing_error:
            problems.append(("socket not closed with 4401 after a token error", f"got {seen}"))
    elif close_code not in allowed and close_code != 4410:
        problems.append((f"socket closed with {close_code}", f"got {seen}"))
    return problems


class SendBudget:
    """A client-side mirror of the server's per-socket token bucket, kept a little below it, so
    the fuzzer's own probes are not what gets rate limited."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s * 0.8
        self.burst = burst * 0.8
        self.tokens = self.burst
        self.updated = time.monotonic()

    def available(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        return self.tokens

    def wait_for(self, needed: float) -> float:
        """Seconds until `needed` messages may be sent."""
        return max(0.0, (needed - self.available()) / self.rate_per_s)

    def spend(self, count: float) -> None:
        self.available()
        self.tokens -= count


class FuzzSocket:
    """A bare /rtc WebSocket that records everything the server sends. When it has joined, it
    answers the server's subscriber offers with a real aiortc peer (a raw socket that never
    answers would be dropped after 20 s)."""

    _probes = itertools.count()

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.session = session
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.close_code: int | None = None
        self.closed = False
        self.joined: dict[str, Any] | None = None
        self.own_publications: list[str] = []
        self.opened_at = time.monotonic()
        self.budget = SendBudget(MESSAGES_PER_S, MESSAGE_BURST)
        self.pc: RTCPeerConnection | None = None
        self._answering = asyncio.Lock()
        self._answers: list[asyncio.Future[None]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str) -> FuzzSocket:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                f"{url}/rtc",
                max_msg_size=0,
                autoping=True,
                # A socket being discarded may belong to a stalled server task: do not wait
                # long for its close handshake.
                timeout=aiohttp.ClientWSTimeout(ws_close=0.5),
            )
        except BaseException:
            await session.close()
            raise
        return cls(ws, session)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    try:
                        message = json.loads(frame.data)
                    except ValueError:
                        message = {"type": "<not json>", "raw": frame.data[:200]}
                else:
                    message = {"type": "<not json>", "raw": f"{frame.type}: {frame.data!r}"[:200]}
                if isinstance(message, dict):
                    await self._react(message)
                self.messages.append(message)
                self.changed.set()
        except Exception as exc:  # the socket broke under us: recorded as a close
            self.messages.append({"type": "<socket error>", "raw": repr(exc)})
        finally:
            self.close_code = self.ws.close_code
            self.closed = True
            self.changed.set()

    async def _react(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "joined":
            self.joined = message
            self.pc = RTCPeerConnection(
                RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            )
        elif kind == "offer" and message.get("pc") == "subscriber" and self.pc is not None:
            # Answered aside: the reader keeps recording what arrives meanwhile.
            self._answers.append(asyncio.ensure_future(self._answer(self.pc, message["sdp"])))
        elif kind == "published" and isinstance(message.get("publication"), dict):
            self.own_publications.append(str(message["publication"].get("id")))

    async def _answer(self, pc: RTCPeerConnection, sdp: str) -> None:
        async with self._answering:
            with contextlib.suppress(Exception):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                answer = {"type": "answer", "pc": "subscriber", "sdp": pc.localDescription.sdp}
                await self.send_text(json.dumps(answer))

    async def send_text(self, data: str) -> bool:
        if self.closed or self.ws.closed:
            return False
        self.budget.spend(1)
        try:
            await self.ws.send_str(data)
            return True
        except (ConnectionError, RuntimeError):
            return False

    async def send(self, payload: Payload) -> bool:
        data = payload.data
        if isinstance(data, str) and OWN_PUBLICATION in data:
            own = self.own_publications[-1] if self.own_publications else "no-own-publication"
            data = data.replace(OWN_PUBLICATION, own)
        if isinstance(data, bytes):
            if self.closed or self.ws.closed:
                return False
            self.budget.spend(1)
            try:
                await self.ws.send_bytes(data)
                return True
            except (ConnectionError, RuntimeError):
                return False
        return await self.send_text(data)

    async def wait_probe(
        self, start: int, timeout: float = REPLY_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Send a ping and return what arrived from `start` up to its ack (or the close). A
        probe the server dropped as rate limited is sent again."""
        deadline = time.monotonic() + timeout
        probes: set[str] = set()
        while True:
            await asyncio.sleep(self.budget.wait_for(1))
            probe = f"probe-{next(self._probes)}"
            probes.add(probe)
            sent_at = len(self.messages)
            await self.send_text(json.dumps({"type": "ping", "id": probe}))
            while True:
                for index in range(start, len(self.messages)):
                    message = self.messages[index]
                    if (
                        isinstance(message, dict)
                        and message.get("type") == "ack"
                        and message.get("id") in probes
                    ):
                        return [
                            m
                            for m in self.messages[start:]
                            if not (isinstance(m, dict) and m.get("id") in probes)
                        ]
                if self.closed:
                    return self.messages[start:]
                if any(
                    isinstance(m, dict) and m.get("code") == "rate-limited"
                    for m in self.messages[sent_at:]
                ):
                    break  # this probe was dropped: send another
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Hang(f"no answer to a ping within {timeout:.0f} s")
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), remaining)

    async def join(self, token: str, room: str, timeout: float = REPLY_TIMEOUT_S) -> None:
        start = len(self.messages)
        await self.send_text(json.dumps({"type": "join", "token": token, "room": room, "id": "j"}))
        deadline = time.monotonic() + timeout
        while self.joined is None:
            if self.closed or time.monotonic() > deadline:
                seen = [(m.get("type"), m.get("code")) for m in self.messages[start:]]
                raise RuntimeError(f"could not join {room} within {timeout:.0f} s: {seen}"[:400])
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 1)
        for task in [self._reader, *self._answers]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)
        await self.session.close()


async def real_sdps() -> list[str]:
    """An offer (audio + video, sendonly) and an answer, as aiortc writes them on loopback."""
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        offerer.addTransceiver(ToneAudioTrack(), direction="sendonly")
        offerer.addTransceiver(PaintedVideoTrack(160, 120, 5), direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        return [offerer.localDescription.sdp, answerer.localDescription.sdp]
    finally:
        await offerer.close()
        await answerer.close()


@dataclass
class MediaParty:
    """A well-behaved publisher, and maybe a viewer watching it: media that must keep flowing."""

    publisher: ParloirClient
    viewer: ParloirClient | None
    publication_id: str
    first_index: int | None = None
    last_index: int | None = None
    last_at: float = 0.0
    longest_gap_s: float = 0.0
    _watch: asyncio.Task[None] | None = None

    async def watch(self) -> None:
        """Read the viewer's video the whole time (nothing queues up), noting gaps."""
        assert self.viewer is not None
        received = await self.viewer.wait_for_track(self.publication_id, "video")
        while True:
            frame = await received.track.recv()
            index = read_frame_index(frame)
            now = time.monotonic()
            if index is not None:
                if self.last_at:
                    self.longest_gap_s = max(self.longest_gap_s, now - self.last_at)
                if self.first_index is None:
                    self.first_index = index
                self.last_index, self.last_at = index, now

    async def leave(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        clients = [self.publisher] + ([self.viewer] if self.viewer else [])
        await asyncio.gather(*(c.leave() for c in clients), return_exceptions=True)


async def start_media_party(
    url: str,
    token_for: Callable[[str, str, Role], str],
    room: str,
    *,
    with_viewer: bool,
    first_frame_s: float = 15.0,
) -> MediaParty:
    def fresh(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:6]}"

    publisher = ParloirClient(url, token=token_for(room, fresh("pub"), Role.PUBLISHER), room=room)
    await publisher.connect()
    publication = await publisher.publish(
        audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 10)
    )
    party = MediaParty(publisher, None, publication["id"])
    if with_viewer:
        party.viewer = ParloirClient(
            url, token=token_for(room, fresh("view"), Role.SUBSCRIBER), room=room
        )
        await party.viewer.connect()
        party._watch = asyncio.ensure_future(party.watch())
        deadline = time.monotonic() + first_frame_s
        while party.first_index is None:
            if time.monotonic() > deadline or party._watch.done():
                raise TimeoutError(f"no painted frame of {party.publication_id} arrived")
            await asyncio.sleep(0.05)
    return party


async def media_party_problems(party: MediaParty) -> list[str]:
    """The viewer still receives newer frames, and nobody muted or ended the publication."""
    assert party.viewer is not None
    problems = []
    for message in party.viewer.events.messages:
        if message.get("publication_id") == party.publication_id and message["type"] in (
            "mute-changed",
            "track-unpublished",
        ):
            problems.append(f"the bystander's publication got {message!r}"[:300])
    seen_before = party.last_index
    await asyncio.sleep(1.0)
    if party._watch is not None and party._watch.done():
        problems.append(f"bystander video ended: {party._watch!r}"[:300])
    elif party.last_index is None or party.last_index == seen_before:
        problems.append(f"bystander video stalled at frame {party.last_index}")
    elif time.monotonic() - party.last_at > 2.0:
        problems.append(
            f"bystander video late: last frame {time.monotonic() - party.last_at:.1f} s ago"
        )
    return problems


async def room_problems(
    url: str, token_for: Callable[[str, str, Role], str], room: str, *, must_see: list[str] = ()
) -> list[str]:
    """A well-behaved pair joins `room`, publishes, receives video and chats; the publications
    in `must_see` are still live and unmuted."""
    problems: list[str] = []
    party: MediaParty | None = None
    try:
        party = await asyncio.wait_for(
            start_media_party(url, token_for, room, with_viewer=True, first_frame_s=8), 30
        )
        assert party.viewer is not None and party.viewer.joined is not None
        live = {p["id"]: p for p in party.viewer.joined["publications"]}
        for publication_id in must_see:
            if publication_id not in live:
                problems.append(f"publication {publication_id} is gone from room {room}")
            elif any(live[publication_id]["muted"].values()):
                problems.append(f"publication {publication_id} was muted: {live[publication_id]}")
        await party.viewer.send_chat("still here", request_id="health")
        await party.publisher.wait_for(
            lambda m: m.get("type") == "chat" and m.get("text") == "still here", timeout=10
        )
    except Exception as exc:
        problems.append(f"a well-behaved client cannot use room {room}: {exc!r}"[:400])
    finally:
        if party is not None:
            await party.leave()
    return problems


async def server_health_problems(url: str) -> list[str]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            body = await response.json()
            if response.status != 200 or body.get("status") != "ok":
                return [f"/healthz answered {response.status} {body!r}"]
    except Exception as exc:
        return [f"/healthz does not answer: {exc!r}"]
    return []


class SignalingFuzzer:
    """Sends generated frames over /rtc, before and after a valid join, and judges each answer."""

    def __init__(
        self,
        url: str,
        token_for: Callable[[str, str, Role], str],
        log: LogWatch,
        report: FuzzReport,
        room: str = "fuzz-room",
        max_message_bytes: int = 64 * 1024,
        sockets: int = 4,
    ) -> None:
        self.url = url
        self.token_for = token_for
        self.log = log
        self.report = report
        self.room = room
        self.max_message_bytes = max_message_bytes
        self.sockets: dict[bool, list[FuzzSocket | None]] = {
            False: [None] * sockets,
            True: [None] * sockets,
        }
        self._turn = itertools.count()
        self.reply_timeout = REPLY_TIMEOUT_S
        """Shortened after the first hang, so one hanging bug cannot eat the whole run."""
        self.slot_rooms = [room] * sockets
        """The room each joined slot joins: the fuzzed room, until a hang there moves the slot
        to a fresh room (a stalled room would make every later join of the run wait)."""
        self._fresh_rooms = itertools.count(1)
        self.bystanders: MediaParty | None = None
        self.resident: MediaParty | None = None

    async def start(self) -> SignalingWorld:
        """A bystander room with media flowing, a resident publisher in the fuzzed room."""
        self.bystanders = await start_media_party(
            self.url, self.token_for, "fuzz-bystanders", with_viewer=True
        )
        self.resident = await start_media_party(
            self.url, self.token_for, self.room, with_viewer=False
        )
        assert self.bystanders.viewer is not None
        tokens = [
            self.token_for(self.room, "mallory", Role.PUBLISHER),
            self.token_for(self.room, "mallory-sub", Role.SUBSCRIBER),
            self.token_for("fuzz-bystanders", "eve", Role.PUBLISHER),
            self.token_for("fuzz-elsewhere", "eve", Role.MODERATOR),
            jwt.encode(
                {
                    "iss": "parloir",
                    "room": self.room,
                    "sub": "x",
                    "role": "moderator",
                    "iat": 0,
                    "exp": 1,
                },
                "wrong-secret-" + "x" * 32,
                algorithm="HS256",
            ),
            jwt.encode(
                {"iss": "parloir", "room": self.room, "sub": "x", "role": "moderator"},
                "",
                algorithm="none",
            ),
            "T1==" + base64.b64encode(b"partner_id=1&sig=00:session_id=x").decode(),
            "not.a.jwt",
            "x",
        ]
        return SignalingWorld(
            room=self.room,
            tokens=tokens,
            publication_ids=[
                self.bystanders.publication_id,
                self.resident.publication_id,
                str(uuid.uuid4()),
            ],
            participant_ids=[
                self.bystanders.publisher.participant_id,
                self.resident.publisher.participant_id,
            ],
            sdps=await real_sdps(),
            max_message_bytes=self.max_message_bytes,
        )

    async def _socket(self, example: SignalingExample) -> FuzzSocket:
        """The next socket of the kind the example wants, (re)opened and (re)joined as needed,
        once it may send the example without being rate limited."""
        slots = self.sockets[example.joined]
        slot = next(self._turn) % len(slots)
        current = slots[slot]
        room = self.slot_rooms[slot]
        stale = current is not None and (
            current.closed
            or (not example.joined and current.joined is not None)
            or (not example.joined and time.monotonic() - current.opened_at > 5)
        )
        if current is not None and stale:
            await current.close()
            current = None
        if current is None:
            current = await FuzzSocket.open(self.url)
            if example.joined:
                identity = f"mallory-{uuid.uuid4().hex[:6]}"
                try:
                    await current.join(self.token_for(room, identity, Role(example.role)), room)
                except RuntimeError as exc:
                    await current.close()
                    self._move(slot)
                    raise JoinFailed(str(exc)) from exc
                self.report.notes["(re)joined the fuzzed room"] += 1
            slots[slot] = current
        await asyncio.sleep(current.budget.wait_for(2 * len(example.frames) + 2))
        return current

    async def run(self, example: SignalingExample) -> None:
        self.report.examples += 1
        try:
            socket = await self._socket(example)
        except JoinFailed as exc:
            self.report.fail(
                "a well-behaved join of the fuzzed room failed",
                str(exc)[:300],
                "(none of its own: earlier input left the room stalled)",
            )
            return
        if example.burst:
            start = len(socket.messages)
            joined = socket.joined is not None
            sent = [p for p in example.frames if await socket.send(p)]
            self.report.inputs += len(sent)
            try:
                replies = await socket.wait_probe(start, self.reply_timeout)
            except Hang as exc:
                self._fail("no answer (hang)", str(exc), example, "burst")
                await self._discard(socket)
                return
            for kind, detail in judge_signaling(None, replies, socket.close_code, joined=joined):
                self._fail(kind, detail, example, "burst")
        else:
            for payload in example.frames:
                if socket.closed:
                    break
                joined = socket.joined is not None
                expected = expect_signaling(
                    payload, joined=joined, max_bytes=self.max_message_bytes
                )
                start = len(socket.messages)
                if not await socket.send(payload):
                    break
                self.report.inputs += 1
                try:
                    replies = await socket.wait_probe(start, self.reply_timeout)
                except Hang as exc:
                    self._fail("no answer (hang)", str(exc), example, payload.kind)
                    await self._discard(socket)
                    break
                for kind, detail in judge_signaling(
                    expected, replies, socket.close_code, joined=joined
                ):
                    self._fail(kind, detail, example, payload.kind)
        if socket.close_code in (4410, 4408):
            self.report.notes[f"socket closed {socket.close_code}"] += 1
        for what, line in self.log.new_problems():
            self.report.fail(f"server log: {what}", line, example.describe())

    def _move(self, slot: int) -> None:
        self.slot_rooms[slot] = f"{self.room}-{next(self._fresh_rooms)}"
        self.report.notes["joined slot moved to a fresh room after a hang"] += 1

    async def _discard(self, socket: FuzzSocket) -> None:
        """A socket that stopped answering is replaced (its backlog would fail what follows),
        and its slot moves to a fresh room."""
        self.reply_timeout = HANG_TIMEOUT_AFTER_FIRST_S
        await socket.close()
        for joined, slots in self.sockets.items():
            for index, current in enumerate(slots):
                if current is socket:
                    slots[index] = None
                    if joined:
                        self._move(index)

    def _fail(self, kind: str, detail: str, example: SignalingExample, frame_kind: str) -> None:
        self.report.fail(f"{kind} [{frame_kind.split('/')[0]}]", detail, example.describe())

    async def _close_sockets(self) -> None:
        for slots in self.sockets.values():
            for index, socket in enumerate(slots):
                if socket is not None:
                    await socket.close()
                slots[index] = None

    async def final_problems(self) -> list[str]:
        """After the fuzz: the bystanders never noticed, the fuzzed room still works."""
        await self._close_sockets()
        problems = await server_health_problems(self.url)
        assert self.bystanders is not None and self.resident is not None
        for message in self.resident.publisher.events.messages:
            if message.get("type") in ("error", "socket-closed", "left"):
                problems.append(
                    f"the well-behaved resident of the fuzzed room got {message!r}"[:300]
                )
        problems += await media_party_problems(self.bystanders)
        problems += await room_problems(
            self.url, self.token_for, self.room, must_see=[self.resident.publication_id]
        )
        problems += [f"server log: {line}" for _, line in self.log.new_problems()]
        return problems

    async def stop(self) -> None:
        await self._close_sockets()
        for party in (self.bystanders, self.resident):
            if party is not None:
                await party.leave()


# ---- the chat data channel ----------------------------------------------------------------------

CHAT_RATE_RETRY_S = 0.06


def chat_payloads(participant_ids: list[str]) -> st.SearchStrategy[Payload]:
    schema = ChatSend.model_json_schema()
    defs = schema.pop("$defs", {})
    semantic: dict[str, st.SearchStrategy[Any]] = {
        "to": st.sampled_from([*participant_ids, "nobody-" + uuid.uuid4().hex[:8]]),
        "text": st.one_of(
            st.text(min_size=1, max_size=60),
            repeated(
                ("x", 8192), ("x", 8193), ("é", 4096), ("é", 4097), ("😀", 2048), ("😀", 2049)
            ),
        ),
    }
    messages = mutated(from_schema(schema, defs, semantic), ["chat", "ping", "join"])
    as_payload = messages.map(
        lambda pair: Payload(
            _recursion_safe_dumps(pair[0]),
            ("chat" if pair[0].get("type") == "chat" else "unknown-type")
            + ("" if pair[1] == "valid" else f"/{pair[1]}"),
        )
    )
    texts = hostile_json_texts().filter(lambda p: p.size <= 200_000)
    return weighted((8, as_payload), (1, texts), (1, binary_payloads(as_payload | texts)))


def expect_chat(payload: Payload, present: set[str], departed: set[str] = frozenset()) -> Expected:
    try:
        message = parse_chat_message(payload.data)
    except SignalingError as error:
        return Expected(errors=frozenset({error.code.value}), request_id=error.request_id)
    except Exception:
        return Expected(errors=UNDECODABLE)
    if message.to is not None and message.to in departed:
        return Expected()  # still held for a resume, or gone: either answer is right
    if message.to is not None and message.to not in present:
        return Expected(
            errors=frozenset({"unknown-participant", "rate-limited"}), request_id=message.id
        )
    return Expected(reply="chat", reply_id=message.id)


class ChatFuzzer:
    """Sends generated frames on real clients' chat data channels; each must be relayed or
    refused with a `chat-error`, and the channel must stay usable (a probe gets relayed)."""

    def __init__(
        self,
        url: str,
        token_for: Callable[[str, str, Role], str],
        log: LogWatch,
        report: FuzzReport,
        room: str = "fuzz-chat",
        chatters: int = 3,
    ) -> None:
        self.url = url
        self.token_for = token_for
        self.log = log
        self.report = report
        self.room = room
        self.chatter_count = chatters
        self.chatters: list[ParloirClient] = []
        self.departed: set[str] = set()
        """Chatters replaced after a failure: the server may still hold them (resume grace)."""
        self._budgets: dict[int, SendBudget] = {}
        self.reply_timeout = REPLY_TIMEOUT_S
        """Shortened after the first channel that stops answering (a run stays bounded)."""
        self._turn = itertools.count()
        self._probes = itertools.count()

    async def _chatter(self) -> ParloirClient:
        client = ParloirClient(
            self.url,
            token=self.token_for(self.room, f"chatter-{uuid.uuid4().hex[:6]}", Role.PUBLISHER),
            room=self.room,
        )
        await client.connect()
        await client.wait_for_chat_channel()
        self._budgets[id(client)] = SendBudget(CHAT_RATE_PER_S, CHAT_BURST)
        return client

    async def start(self) -> list[str]:
        self.chatters = [await self._chatter() for _ in range(self.chatter_count)]
        return [c.participant_id for c in self.chatters]

    def present(self) -> set[str]:
        return {c.participant_id for c in self.chatters}

    async def run(self, frames: tuple[Payload, ...]) -> None:
        self.report.examples += 1
        slot = next(self._turn) % len(self.chatters)
        client = self.chatters[slot]
        budget = self._budgets[id(client)]
        await asyncio.sleep(budget.wait_for(2 * len(frames) + 1))
        for payload in frames:
            expected = expect_chat(payload, self.present(), self.departed)
            start = len(client.events.messages)
            try:
                budget.spend(1)
                client.chat_channel.send(payload.data)
            except Exception as exc:  # the client refused to send it (over SCTP's size)
                self.report.notes[f"client could not send: {type(exc).__name__}"] += 1
                continue
            self.report.inputs += 1
            try:
                replies = await self._probe(client, start)
            except Exception as exc:
                self.reply_timeout = HANG_TIMEOUT_AFTER_FIRST_S
                self.report.fail(
                    f"chat channel unusable after a frame [{payload.kind.split('/')[0]}]",
                    repr(exc)[:300],
                    payload.describe(),
                )
                self.departed.add(client.participant_id)
                await client.close()
                client = self.chatters[slot] = await self._chatter()
                break
            for kind, detail in judge_chat(expected, replies, client.participant_id):
                self.report.fail(
                    f"{kind} [{payload.kind.split('/')[0]}]", detail, payload.describe()
                )
        for what, line in self.log.new_problems():
            self.report.fail(f"server log: {what}", line, " ; ".join(p.describe() for p in frames))

    async def _probe(self, client: ParloirClient, start: int) -> list[dict[str, Any]]:
        """Send a chat and wait for its relay; sent again if it was rate limited (a rate-limited
        chat-error may not say which message it refuses)."""
        deadline = time.monotonic() + self.reply_timeout
        probes: set[str] = set()
        budget = self._budgets[id(client)]
        while True:
            await asyncio.sleep(budget.wait_for(1))
            probe = f"probe-{next(self._probes)}"
            probes.add(probe)
            index = len(client.events.messages)
            if client.chat_channel is None or client.chat_channel.readyState != "open":
                raise RuntimeError("the chat channel closed")
            budget.spend(1)
            client.chat_channel.send(json.dumps({"type": "chat", "text": "probe", "id": probe}))

            def answered(m: dict[str, Any]) -> bool:
                return (
                    m.get("request_id") in probes
                    or m.get("id") in probes
                    or (m.get("type") == "chat-error" and m.get("code") == "rate-limited")
                )

            reply = await client.wait_for(
                answered, timeout=max(deadline - time.monotonic(), 0.1), start=index
            )
            if reply.get("type") == "chat":
                return [
                    m
                    for m in client.events.messages[start:]
                    if m.get("request_id") not in probes and m.get("id") not in probes
                ]
            if reply.get("code") != "rate-limited" or time.monotonic() > deadline:
                raise RuntimeError(f"probe refused: {reply!r}")
            self.report.notes["probe rate-limited"] += 1
            await asyncio.sleep(CHAT_RATE_RETRY_S)

    async def stop(self) -> None:
        await asyncio.gather(*(c.leave() for c in self.chatters), return_exceptions=True)


def judge_chat(
    expected: Expected, replies: list[dict[str, Any]], sender_id: str
) -> list[tuple[str, str]]:
    mine = [
        r
        for r in replies
        if r.get("type") == "chat-error"
        or (r.get("type") == "chat" and (r.get("from") or {}).get("id") == sender_id)
    ]
    problems: list[tuple[str, str]] = []
    for reply in replies:
        if reply.get("type") not in CHAT_MESSAGES and reply.get("type") not in SERVER_MESSAGES:
            problems.append((f"undocumented message {reply.get('type')!r}", repr(reply)[:200]))
        if reply.get("type") == "chat-error" and (
            reply.get("code") not in ERROR_CODES or reply.get("code") == "internal"
        ):
            problems.append(("undocumented or internal chat-error", repr(reply)[:200]))
    seen = ", ".join(f"{r['type']}:{r.get('code', '')}" for r in mine) or "nothing"
    if expected.errors:
        match = [r for r in mine if r["type"] == "chat-error" and r.get("code") in expected.errors]
        if not match:
            problems.append(
                (f"expected chat-error {'/'.join(sorted(expected.errors))}", f"got {seen}")
            )
        elif expected.request_id is not None and not any(
            r.get("id") == expected.request_id for r in match
        ):
            problems.append(("chat-error does not echo the id", repr(match[0])[:200]))
    elif expected.reply == "chat":
        relayed = [
            r for r in mine if r["type"] == "chat" and r.get("request_id") == expected.reply_id
        ]
        limited = [r for r in mine if r.get("code") == "rate-limited"]
        if not relayed and not limited:
            problems.append(("valid chat neither relayed nor rate-limited", f"got {seen}"))
        if (
            limited
            and expected.reply_id is not None
            and not any(r.get("id") == expected.reply_id for r in limited)
        ):
            problems.append(
                ("rate-limited chat-error does not echo the id", repr(limited[0])[:200])
            )
    return problems


# ---- HTTP ---------------------------------------------------------------------------------------


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def http_request(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: dict[str, str | bytes] | None = None,
    body: bytes | None = None,
    timeout: float = REPLY_TIMEOUT_S,
) -> HttpReply:
    """Exactly this request line, headers and body (no client-side normalisation of `../`)."""
    parsed = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
    except TimeoutError as exc:
        raise Hang(f"no HTTP answer within {timeout:.0f} s") from exc
    finally:
        connection.close()
    return HttpReply(
        response.status,
        {k.lower(): v for k, v in response.getheaders()},
        data,
        time.monotonic() - started,
    )


PARSER_REJECTIONS = (b"Got more than", b"Bad status line", b"Invalid method", b"Data after")
"""aiohttp's own HTTP parser refusing the request before any route sees it."""


def judge_http(reply: HttpReply, *, json_errors: bool = True) -> list[tuple[str, str]]:
    """Never 5xx, never slow; 4xx answers of the JSON APIs are JSON with a `message`."""
    if reply.status == 400 and reply.body.startswith(PARSER_REJECTIONS):
        return [
            (
                "HTTP parser rejection is not JSON (any route)",
                reply.body[:120].decode(errors="replace"),
            )
        ]
    problems = []
    if reply.status >= 500:
        problems.append((f"{reply.status} server error", reply.body[:300].decode(errors="replace")))
    elif json_errors and reply.status >= 400:
        body = reply.json()
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            problems.append(
                (
                    f"{reply.status} without a JSON message",
                    reply.body[:200].decode(errors="replace"),
                )
            )
    if reply.seconds > RESPONSE_TIME_BOUND_S:
        problems.append(("slow answer", f"{reply.seconds:.1f} s"))
    return problems


@dataclass(frozen=True)
class ApiCall:
    """One generated HTTP request; path parameters may be placeholders filled in when sent."""

    method: str
    route: str
    """The route template, e.g. `/v2/project/{project}/archive`: failures are grouped by it."""
    params: tuple[tuple[str, str], ...]
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    note: str = ""

    def target(self, resolve: Callable[[str], str] = lambda v: v) -> str:
        path = self.route
        for name, value in self.params:
            quoted = urllib.parse.quote(resolve(value), safe="", errors="surrogatepass")
            path = path.replace("{" + name + "}", quoted)
        return path + (f"?{self.query}" if self.query else "")

    def describe(self) -> str:
        headers = " ".join(f"-H {f'{k}: {v}'!r}" for k, v in self.headers)
        body = f" --data-binary {self.body!r}" if self.body is not None else ""
        note = f"  # {self.note}" if self.note else ""
        return f"{self.method} {self.target()} {headers}{body}{note}".strip()


# ---- Vonage REST --------------------------------------------------------------------------------

LIVE_SESSION = "$live-session"
IDLE_SESSION = "$idle-session"
LIVE_STREAM = "$live-stream"
LIVE_CONNECTION = "$live-connection"
KNOWN_ARCHIVE = "$archive"


def vonage_jwt(api_key: str, secret: str, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": api_key, "ist": "project", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def client_token(api_key: str, secret: str, session_id: str, role: str = "publisher") -> str:
    """An opentok client token (HS256 JWT) that joins `session_id` over /rtc."""
    return vonage_jwt(api_key, secret, scope="session.connect", session_id=session_id, role=role)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def vonage_auth(api_key: str, secret: str) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """The X-OPENTOK-AUTH header, right or wrong in every way we could think of."""
    now = int(time.time())
    forged = [
        ("expired", lambda: vonage_jwt(api_key, secret, iat=now - 7200, exp=now - 3600)),
        ("not yet valid", lambda: vonage_jwt(api_key, secret, iat=now + 3600, exp=now + 7200)),
        ("wrong secret", lambda: vonage_jwt(api_key, "wrong-" + secret)),
        ("unknown project", lambda: vonage_jwt("999999", secret)),
        ("not a project token", lambda: vonage_jwt(api_key, secret, ist="account")),
        (
            "alg none",
            lambda: jwt.encode(
                {"iss": api_key, "ist": "project", "iat": now, "exp": now + 60},
                "",
                algorithm="none",
            ),
        ),
        (
            "RS256 garbage",
            lambda: ".".join(
                (
                    _b64(b'{"alg":"RS256","typ":"JWT"}'),
                    _b64(json.dumps({"application_id": "x", "iat": now, "exp": now + 60}).encode()),
                    _b64(b"sig"),
                )
            ),
        ),
        ("header not JSON", lambda: ".".join((_b64(b"{not json"), _b64(b"{}"), _b64(b"x")))),
        (
            "payload a list",
            lambda: ".".join((_b64(b'{"alg":"HS256"}'), _b64(b"[1,2]"), _b64(b"x"))),
        ),
        ("not a JWT", lambda: "definitely-not-a-jwt"),
        ("empty", lambda: ""),
    ]
    junk = json_values(4, long=False)
    junk_claims = st.fixed_dictionaries(
        {},
        optional={
            "iss": st.just(api_key) | junk,
            "ist": st.just("project") | junk,
            "iat": st.just(now) | junk,
            "exp": st.just(now + 60) | junk,
        },
    ).map(lambda claims: ("junk claims", lambda: _signed(claims, secret)))
    valid = st.just(("valid", lambda: vonage_jwt(api_key, secret)))
    chosen = weighted((10, valid), (2, st.sampled_from(forged)), (1, junk_claims))
    placement = st.sampled_from(["x-opentok-auth"] * 6 + ["bearer", "none"])

    def header(pair: tuple[tuple[str, Callable[[], str]], str]) -> tuple[tuple[str, str], ...]:
        (_, make), where = pair
        token = make()
        if where == "none":
            return ()
        if where == "bearer":
            return (("Authorization", f"Bearer {token}"),)
        return (("X-OPENTOK-AUTH", token),)

    return st.tuples(chosen, placement).map(header)


def _signed(claims: dict[str, Any], secret: str) -> str:
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    try:
        payload = _b64(json.dumps(claims).encode())
    except ValueError:
        payload = _b64(b"{}")
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


PROJECT = "/v2/project/{project}"
SESSION = PROJECT + "/session/{session}"
ARCHIVE = PROJECT + "/archive"

VONAGE_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/session/create", "form"),
    ("GET", SESSION + "/stream", ""),
    ("PUT", SESSION + "/stream", "stream-classes"),
    ("GET", SESSION + "/stream/{stream}", ""),
    ("POST", SESSION + "/stream/{stream}/mute", "junk"),
    ("POST", SESSION + "/mute", "mute"),
    ("POST", SESSION + "/signal", "signal"),
    ("POST", SESSION + "/connection/{connection}/signal", "signal"),
    ("DELETE", SESSION + "/connection/{connection}", ""),
    ("POST", SESSION + "/play-dtmf", "junk"),
    ("POST", SESSION + "/connection/{connection}/play-dtmf", "junk"),
    ("POST", PROJECT + "/broadcast", "junk"),
    ("GET", PROJECT + "/broadcast/{id}", ""),
    ("PUT", PROJECT + "/broadcast/{id}/layout", "junk"),
    ("POST", PROJECT + "/dial", "junk"),
    ("POST", PROJECT + "/render", "junk"),
    ("DELETE", PROJECT + "/captions/{id}/stop", ""),
    ("POST", ARCHIVE, "archive"),
    ("GET", ARCHIVE, "list"),
    ("GET", ARCHIVE + "/{archive}", ""),
    ("DELETE", ARCHIVE + "/{archive}", ""),
    ("POST", ARCHIVE + "/{archive}/stop", ""),
    ("PUT", ARCHIVE + "/{archive}/layout", "layout"),
    ("PATCH", ARCHIVE + "/{archive}/streams", "streams"),
)

_RESOLUTIONS = ["640x480", "1280x720", "1920x1080", "480x640", "720x1280", "1080x1920", "1x1", ""]
_LAYOUTS = ["bestFit", "custom", "pip", "horizontalPresentation", "verticalPresentation", "x"]


def _fields(
    required: tuple[str, ...] = (), **plausible: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A body with these fields (each plausible, or sometimes junk); only `required` ones are
    always there."""
    values = {k: weighted((4, v), (1, json_values())) for k, v in plausible.items()}
    return st.fixed_dictionaries(
        {k: v for k, v in values.items() if k in required},
        optional={k: v for k, v in values.items() if k not in required},
    )


def vonage_bodies(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    ids = weighted((4, st.sampled_from([LIVE_STREAM, str(uuid.uuid4()), ""])), (1, any_text(20)))
    sessions = weighted(
        (4, st.sampled_from([LIVE_SESSION, LIVE_SESSION, IDLE_SESSION, "1_abc", ""])),
        (1, any_text(20)),
    )
    if kind == "form":
        return _fields(
            **{
                "p2p.preference": st.sampled_from(["enabled", "disabled"]),
                "media_mode": st.sampled_from(["routed", "relayed", "x"]),
                "archiveMode": st.sampled_from(["manual", "always", "x"]),
                "archiveResolution": st.sampled_from(_RESOLUTIONS),
                "archiveName": any_text(90),
                "e2ee": st.sampled_from(["true", "false", "TRUE", ""]),
                "location": st.sampled_from(["127.0.0.1", "~", "1~2~3", ""]) | any_text(),
            }
        )
    if kind == "stream-classes":
        item = _fields(id=ids, layoutClassList=st.lists(any_text(10), max_size=3))
        return _fields(items=st.lists(item, max_size=3))
    if kind == "mute":
        return _fields(
            active=st.booleans(),
            excludedStreamIds=st.lists(ids, max_size=2),
            excludedStreams=st.lists(ids, max_size=2),
        )
    if kind == "signal":
        return _fields(
            type=st.sampled_from(["chat", "", "bad type!"]) | repeated(("a", 128), ("a", 129)),
            data=st.sampled_from(["hi", ""])
            | repeated(("x", 8192), ("x", 8193), ("é", 4097))
            | any_text(),
        )
    if kind == "archive":
        return _fields(
            ("sessionId",),
            sessionId=sessions,
            name=any_text(90),
            outputMode=st.sampled_from(["composed", "individual", "x"]),
            resolution=st.sampled_from(_RESOLUTIONS),
            hasAudio=st.booleans(),
            hasVideo=st.booleans(),
            streamMode=st.sampled_from(["auto", "manual", "x"]),
            layout=_fields(type=st.sampled_from(_LAYOUTS), stylesheet=any_text()),
            multiArchiveTag=any_text(20),
        )
    if kind == "layout":
        return _fields(
            type=st.sampled_from(_LAYOUTS), stylesheet=any_text(), screenshareType=any_text()
        )
    if kind == "streams":
        return _fields(
            addStream=ids, removeStream=ids, hasAudio=st.booleans(), hasVideo=st.booleans()
        )
    return json_values().map(lambda v: v if isinstance(v, dict) else {"value": v})


def _encode_body(pair: tuple[dict[str, Any] | Payload, str]) -> tuple[bytes | None, str]:
    value, encoding = pair
    if isinstance(value, Payload):
        data = value.data
        return (
            data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        ), "application/json"
    if encoding == "form":
        flat = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return urllib.parse.urlencode(
            flat, encoding="utf-8", errors="surrogatepass"
        ).encode(), "application/x-www-form-urlencoded"
    if encoding == "none":
        return None, ""
    return _recursion_safe_dumps(value).encode(), "application/json"


def vonage_calls(api_key: str, secret: str) -> st.SearchStrategy[ApiCall]:
    def param(name: str) -> st.SearchStrategy[str]:
        junk = st.one_of(
            st.text(min_size=1, max_size=30),
            st.text(min_size=1, max_size=30),
            st.sampled_from(NASTY_STRINGS).filter(bool),
            repeated(("a", 65), ("a", 256)),
        )
        junk = weighted((19, junk), (1, repeated(("a", 9000))))
        meaningful = {
            "project": [api_key] * 6 + ["999999", "0"],
            "session": [LIVE_SESSION] * 4
            + [IDLE_SESSION] * 2
            + ["1_" + _b64(b"1~999~~x~r~"), "2_x"],
            "stream": [LIVE_STREAM] * 3 + [str(uuid.uuid4())],
            "connection": [LIVE_CONNECTION] * 3 + [str(uuid.uuid4())],
            "archive": [KNOWN_ARCHIVE] * 3 + [str(uuid.uuid4())],
        }
        if name not in meaningful:
            return junk
        return weighted((4, st.sampled_from(meaningful[name])), (1, junk))

    queries = st.one_of(
        st.just(""),
        st.builds(
            lambda o, c, s: urllib.parse.urlencode(
                {k: v for k, v in (("offset", o), ("count", c), ("sessionId", s)) if v is not None}
            ),
            st.none()
            | st.sampled_from(["0", "-1", "1e3", "99999999999999999999", "x"])
            | st.integers().map(str),
            st.none() | st.sampled_from(["0", "-5", "1000000", "x"]) | st.integers().map(str),
            st.none() | st.sampled_from([LIVE_SESSION, "x"]),
        ),
    )

    def for_route(route: tuple[str, str, str]) -> st.SearchStrategy[ApiCall]:
        method, template, kind = route
        names = re.findall(r"{(\w+)}", template)
        params = st.tuples(*(param(n) for n in names)).map(
            lambda values: tuple(zip(names, values, strict=True))
        )
        natural = "form" if kind == "form" else "json"
        body = weighted(
            (6, st.tuples(vonage_bodies(kind or "junk"), st.just(natural))),
            (
                1,
                st.tuples(vonage_bodies(kind or "junk"), st.sampled_from(["json", "form", "none"])),
            ),
            (1, st.tuples(hostile_json_texts().filter(lambda p: p.size < 100_000), st.just("raw"))),
        ).map(_encode_body)
        others = [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/json; charset=utf-16",
            "",
            "multipart/form-data; boundary=x",
        ]
        content_types = weighted((3, st.none()), (1, st.sampled_from(others)))

        def build(
            p: tuple[tuple[str, str], ...],
            q: str,
            auth: tuple[tuple[str, str], ...],
            encoded: tuple[bytes | None, str],
            content_type: str | None,
        ) -> ApiCall:
            data, natural = encoded
            chosen = natural if content_type is None else content_type
            headers = auth + ((("Content-Type", chosen),) if chosen and data is not None else ())
            return ApiCall(method, template, p, q if kind == "list" else "", headers, data)

        return st.builds(build, params, queries, vonage_auth(api_key, secret), body, content_types)

    def weight(route: tuple[str, str, str]) -> int:
        method, template, kind = route
        if kind == "junk" and "/session/" not in template:
            return 1  # the unsupported products: one refusal each
        return 6 if (method, template) == ("POST", ARCHIVE) else 3

    return weighted(*((weight(r), for_route(r)) for r in VONAGE_ROUTES))


@dataclass
class LiveVonageSession:
    """A Vonage session with a participant connected and publishing, an idle session and an
    archive with a file: the ids generated requests aim at. Re-established when a request
    legitimately ends it (force disconnect)."""

    url: str
    api_key: str
    secret: str
    session_id: str = ""
    idle_session_id: str = ""
    archive_id: str = ""
    party: MediaParty | None = None

    def _post(self, target: str, body: bytes, content_type: str) -> HttpReply:
        return http_request(
            self.url,
            "POST",
            target,
            headers={
                "X-OPENTOK-AUTH": vonage_jwt(self.api_key, self.secret),
                "Content-Type": content_type,
            },
            body=body,
        )

    def create_session(self) -> str:
        reply = self._post(
            "/session/create", b"archiveMode=manual", "application/x-www-form-urlencoded"
        )
        assert reply.status == 200, reply
        return str(reply.json()[0]["session_id"])

    async def start(self) -> None:
        self.session_id = await asyncio.to_thread(self.create_session)
        self.idle_session_id = await asyncio.to_thread(self.create_session)
        await self.ensure_connected()
        await self.new_archive(seconds=1.0)

    async def new_archive(self, seconds: float = 0.2) -> None:
        """Record the live session briefly: an archive with a file to aim at."""
        body = json.dumps({"sessionId": self.session_id, "outputMode": "individual"}).encode()
        target = f"/v2/project/{self.api_key}/archive"
        started = await asyncio.to_thread(self._post, target, body, "application/json")
        assert started.status == 200, started
        self.archive_id = started.json()["id"]
        await asyncio.sleep(seconds)
        stopped = await asyncio.to_thread(self.stop_archive, self.archive_id)
        assert stopped.status == 200, stopped

    def stop_archive(self, archive_id: str) -> HttpReply:
        return self._post(
            f"/v2/project/{self.api_key}/archive/{archive_id}/stop", b"", "application/json"
        )

    async def ensure_connected(self) -> bool:
        """Reconnect the participant if a request disconnected it; True if it had to."""
        if self.party is not None and not any(
            m.get("type") == "socket-closed" for m in self.party.publisher.events.messages
        ):
            return False
        if self.party is not None:
            await self.party.leave()

        def token(room: str, identity: str, role: Role) -> str:
            return client_token(self.api_key, self.secret, room, role="publisher")

        self.party = await start_media_party(self.url, token, self.session_id, with_viewer=False)
        return True

    def resolve(self, value: str) -> str:
        assert self.party is not None
        return {
            LIVE_SESSION: self.session_id,
            IDLE_SESSION: self.idle_session_id,
            LIVE_STREAM: self.party.publication_id,
            LIVE_CONNECTION: self.party.publisher.participant_id,
            KNOWN_ARCHIVE: self.archive_id,
        }.get(value, value)

    def resolve_body(self, body: bytes | None) -> bytes | None:
        if body is None:
            return None
        for placeholder in (
            LIVE_SESSION,
            IDLE_SESSION,
            LIVE_STREAM,
            LIVE_CONNECTION,
            KNOWN_ARCHIVE,
        ):
            if placeholder.encode() in body:
                body = body.replace(placeholder.encode(), self.resolve(placeholder).encode())
        return body

    async def stop(self) -> None:
        if self.party is not None:
            await self.party.leave()


class VonageFuzzer:
    def __init__(
        self, live: LiveVonageSession, loop: LoopThread, log: LogWatch, report: FuzzReport
    ) -> None:
        self.live = live
        self.loop = loop
        self.log = log
        self.report = report

    def run(self, call: ApiCall) -> None:
        self.report.examples += 1
        if self.loop.run(self.live.ensure_connected(), timeout=60):
            self.report.notes["participant reconnected after a force disconnect"] += 1
        target = call.target(self.live.resolve)
        self.report.inputs += 1
        try:
            reply = http_request(
                self.live.url,
                call.method,
                target,
                headers=dict(call.headers),
                body=self.live.resolve_body(call.body),
            )
        except Hang as exc:
            self.report.fail(
                f"no answer (hang) [{call.method} {call.route}]", str(exc), call.describe()
            )
            return
        for kind, detail in judge_http(reply):
            where = "" if "any route" in kind else f" [{call.method} {call.route}]"
            self.report.fail(f"{kind}{where}", detail, call.describe())
        if call.route == ARCHIVE + "/{archive}" and call.method == "DELETE" and reply.status == 204:
            if dict(call.params).get("archive") == KNOWN_ARCHIVE:
                self.loop.run(self.live.new_archive(), timeout=60)
                self.report.notes["known archive deleted (then another made)"] += 1
        if call.route == ARCHIVE and call.method == "POST" and reply.status == 200:
            archive = reply.json()
            if isinstance(archive, dict) and archive.get("status") == "started":
                self.live.stop_archive(str(archive["id"]))
                self.report.notes["archive started (then stopped)"] += 1
        for what, line in self.log.new_problems():
            self.report.fail(f"server log: {what}", line, call.describe())


# ---- the platform, participant and staff APIs (OpenAPI) -----------------------------------------


@dataclass
class PlatformWorld:
    """A scheduled session whose mentor is in the call, a recording with a file, credentials of
    every kind: what generated requests aim at."""

    url: str
    api_key: str
    staff_token: str
    session_id: str = ""
    room: str = ""
    student: str = ""
    mentor_token: str = ""
    student_token: str = ""
    other_room_token: str = ""
    expired_token: str = ""
    recording_id: str = ""
    party: MediaParty | None = None

    def call(
        self, method: str, target: str, body: Any = None, auth: str | None = None
    ) -> HttpReply:
        headers: dict[str, str | bytes] = {"Authorization": f"Bearer {auth or self.api_key}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        return http_request(self.url, method, target, headers=headers, body=data)

    async def start(
        self, token_for: Callable[[str, str, Role], str], *, expired_token: str
    ) -> None:
        created = await asyncio.to_thread(
            self.call,
            "POST",
            "/api/sessions",
            {
                "type": "mentoring",
                "scheduled_start": "2030-01-01T10:00:00Z",
                "scheduled_end": "2030-01-01T11:00:00Z",
                "mentor": {"identity": "fuzz-mentor", "name": "Mentor"},
                "student": {"identity": "fuzz-student", "name": "Student"},
                "auto_record": False,
            },
        )
        assert created.status == 201, created
        session = created.json()
        self.session_id, self.room = session["id"], session["room_id"]
        self.student = "fuzz-student"
        tokens = {}
        for party in ("mentor", "student"):
            reply = await asyncio.to_thread(
                self.call, "POST", f"/api/sessions/{self.session_id}/tokens", {"party": party}
            )
            assert reply.status == 201, reply
            tokens[party] = reply.json()["token"]
        self.mentor_token, self.student_token = tokens["mentor"], tokens["student"]
        self.other_room_token = token_for("fuzz-other-room", "fuzz-mentor", Role.MODERATOR)
        self.expired_token = expired_token

        def mentor(room: str, identity: str, role: Role) -> str:
            return self.mentor_token

        self.party = await start_media_party(self.url, mentor, self.room, with_viewer=False)
        started = await asyncio.to_thread(
            self.call, "POST", f"/api/rooms/{self.room}/recordings", {"output_mode": "individual"}
        )
        assert started.status == 201, started
        self.recording_id = started.json()["id"]
        await asyncio.sleep(1.0)
        stopped = await asyncio.to_thread(
            self.call, "POST", f"/api/recordings/{self.recording_id}/stop"
        )
        assert stopped.status == 200, stopped

    def pins(self) -> dict[str, str]:
        return {
            "session_id": self.session_id,
            "room": self.room,
            "recording_id": self.recording_id,
            "identity": self.student,
        }

    def credentials(self, scheme: str) -> dict[str, str]:
        return {
            "platformKey": {"Authorization": f"Bearer {self.api_key}"},
            "joinToken": {"Authorization": f"Bearer {self.mentor_token}"},
            "staffToken": {"Authorization": f"Bearer {self.staff_token}"},
            "staffCookie": {"Cookie": f"parloir_staff={self.staff_token}"},
        }[scheme]

    def wrong_credentials(self) -> list[tuple[str, dict[str, str]]]:
        return [
            ("no credential", {}),
            ("garbage bearer", {"Authorization": "Bearer nope"}),
            ("not bearer", {"Authorization": f"Basic {self.api_key}"}),
            ("student join token", {"Authorization": f"Bearer {self.student_token}"}),
            ("join token of another room", {"Authorization": f"Bearer {self.other_room_token}"}),
            ("expired join token", {"Authorization": f"Bearer {self.expired_token}"}),
            ("platform key", {"Authorization": f"Bearer {self.api_key}"}),
            ("staff token", {"Authorization": f"Bearer {self.staff_token}"}),
        ]

    async def stop(self) -> None:
        if self.party is not None:
            await self.party.leave()


class OpenApiFuzzer:
    """schemathesis over the server's own /openapi.json, every operation, positive and negative
    data, with the right credential for its auth kind (and, sometimes, a wrong one)."""

    def __init__(self, world: PlatformWorld, log: LogWatch, report: FuzzReport) -> None:
        import requests
        import schemathesis

        self.world = world
        self.log = log
        self.report = report
        self.schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json")
        self.operations = [r.ok() for r in self.schema.get_all_operations()]
        self.session = requests.Session()

    def strategy(self) -> st.SearchStrategy[tuple[Any, str, dict[str, str]]]:
        from schemathesis import GenerationMode

        pins = self.world.pins()
        choices = []
        for operation in self.operations:
            names = re.findall(r"{(\w+)}", operation.path)
            pinned = {n: pins[n] for n in names if n in pins}
            security = operation.definition.raw.get("security") or []
            schemes = [name for requirement in security for name in requirement]
            right = [(f"with {s}", self.world.credentials(s)) for s in schemes] or [
                ("no credential", {})
            ]
            auth = weighted(
                (3, st.sampled_from(right)),
                (1, st.sampled_from(self.world.wrong_credentials())),
            )
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategies = [operation.as_strategy(generation_mode=mode)]
                if pinned:
                    strategies.append(
                        operation.as_strategy(generation_mode=mode, path_parameters=pinned)
                    )
                for cases in strategies:
                    choices.append(st.tuples(cases, auth))
        return st.one_of(*choices).map(lambda pair: (pair[0], pair[1][0], pair[1][1]))

    def run(self, drawn: tuple[Any, str, dict[str, str]]) -> None:
        from schemathesis.checks import not_a_server_error

        case, auth_name, headers = drawn
        self.report.examples += 1
        label = f"{case.method.upper()} {case.path}"
        reproducer = f"{auth_name}: " + case.as_curl_command(
            headers=headers, base_url=self.world.url
        )
        self.report.inputs += 1
        started = time.monotonic()
        try:
            response = case.call(
                base_url=self.world.url,
                session=self.session,
                headers=headers,
                timeout=REPLY_TIMEOUT_S,
            )
        except Exception as exc:
            self.report.fail(f"no answer [{label}]", repr(exc)[:300], reproducer)
            return
        elapsed = time.monotonic() - started
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except Exception as exc:
            first = str(exc).strip().splitlines()
            self.report.fail(
                f"{response.status_code} server error [{label}]",
                " ".join(first[:3])[:300],
                reproducer,
            )
        if elapsed > RESPONSE_TIME_BOUND_S:
            self.report.fail(f"slow answer [{label}]", f"{elapsed:.1f} s", reproducer)
        if 400 <= response.status_code < 500 and case.path.startswith("/api/"):
            try:
                body = response.json()
            except ValueError:
                body = None
            if not (isinstance(body, dict) and "error" in body and "message" in body):
                self.report.fail(
                    f"{response.status_code} error not JSON {{error, message}} [{label}]",
                    response.text[:200],
                    reproducer,
                )
        self._clean_up(case, response)
        for what, line in self.log.new_problems():
            self.report.fail(f"server log: {what}", line, reproducer)

    def _clean_up(self, case: Any, response: Any) -> None:
        """A recording a generated request started is stopped at once (two cores)."""
        if (
            case.path.endswith("/recordings")
            and case.method.upper() == "POST"
            and response.status_code == 201
        ):
            with contextlib.suppress(Exception):
                self.world.call("POST", f"/api/recordings/{response.json()['id']}/stop")
            self.report.notes["recording started (then stopped)"] += 1

    def body_operations(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, concrete path, right credential) of every operation that reads a JSON body."""
        pins = self.world.pins()
        found = []
        for operation in self.operations:
            if operation.definition.raw.get("requestBody") is None:
                continue
            path = operation.path
            for name in re.findall(r"{(\w+)}", path):
                path = path.replace("{" + name + "}", pins.get(name, "x"))
            security = operation.definition.raw.get("security") or []
            schemes = [name for requirement in security for name in requirement]
            found.append(
                (
                    operation.method.upper(),
                    path,
                    self.world.credentials(schemes[0]) if schemes else {},
                )
            )
        return found


def _operations(
    document: dict[str, Any], world: PlatformWorld
) -> list[
    tuple[str, str, dict[str, Any], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
]:
    """(method, path template, operation, pinned path params, right credential headers)."""
    pins = world.pins()
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = re.findall(r"{(\w+)}", path)
            params = tuple((n, pins.get(n, "x")) for n in names)
            security = operation.get("security") or []
            schemes = [name for requirement in security for name in requirement]
            headers = tuple(world.credentials(schemes[0]).items()) if schemes else ()
            found.append((method.upper(), path, operation, params, headers))
    return found


def edge_calls(document: dict[str, Any], world: PlatformWorld) -> st.SearchStrategy[ApiCall]:
    """Requests built from /openapi.json by our own generator: every body and query field at
    its edges (date-times at year 1 and 9999, naive and aware, numbers at their bounds), with
    the right credential and the ids of things that exist."""
    components = document.get("components", {}).get("schemas", {})
    choices = []
    for method, path, operation, params, headers in _operations(document, world):
        if True:
            query_fields = {
                p["name"]: p["schema"]
                for p in operation.get("parameters", [])
                if p["in"] == "query"
            }
            query = st.fixed_dictionaries(
                {}, optional={k: from_schema(v, components, {}) for k, v in query_fields.items()}
            ).map(lambda q: urllib.parse.urlencode({k: _query_value(v) for k, v in q.items()}))
            body_ref = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            body = (
                from_schema(body_ref, components, {}).map(
                    lambda b: _recursion_safe_dumps(b).encode()
                )
                if body_ref
                else st.none()
            )

            def build(
                q: str,
                b: bytes | None,
                method: str = method,
                path: str = path,
                params: tuple[tuple[str, str], ...] = params,
                headers: tuple[tuple[str, str], ...] = headers,
            ) -> ApiCall:
                extra = (("Content-Type", "application/json"),) if b is not None else ()
                return ApiCall(method, path, params, q, headers + extra, b)

            choices.append(st.builds(build, query, body))
    return st.one_of(*choices)


def hostile_body_calls(
    document: dict[str, Any], world: PlatformWorld
) -> st.SearchStrategy[ApiCall]:
    """Every operation that reads a JSON body, with a body no schema generator would write."""
    choices = [
        st.builds(
            lambda pair, m=method, p=path, a=params, h=headers: ApiCall(
                m, p, a, "", h + (("Content-Type", pair[1]),), pair[0]
            ),
            hostile_bodies(),
        )
        for method, path, operation, params, headers in _operations(document, world)
        if operation.get("requestBody")
    ]
    return st.one_of(*choices)


class PlatformFuzzer:
    """Sends our own generated requests (edge values, hostile bodies) to the platform,
    participant and staff APIs and judges each answer."""

    def __init__(self, world: PlatformWorld, log: LogWatch, report: FuzzReport) -> None:
        self.world = world
        self.log = log
        self.report = report

    def run(self, call: ApiCall) -> None:
        self.report.examples += 1
        self.report.inputs += 1
        label = f"{call.method} {call.route}"
        try:
            reply = http_request(
                self.world.url,
                call.method,
                call.target(),
                headers=dict(call.headers),
                body=call.body,
            )
        except Hang as exc:
            self.report.fail(f"no answer (hang) [{label}]", str(exc), call.describe())
            return
        for kind, detail in judge_http(reply):
            self.report.fail(f"{kind} [{label}]", detail, call.describe())
        if call.route.endswith("/recordings") and call.method == "POST" and reply.status == 201:
            with contextlib.suppress(Exception):
                self.world.call("POST", f"/api/recordings/{reply.json()['id']}/stop")
            self.report.notes["recording started (then stopped)"] += 1
        for what, line in self.log.new_problems():
            self.report.fail(f"server log: {what}", line, call.describe())


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def hostile_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    """Bodies no schema generator would write: too deep, numbers too long, not UTF-8, huge."""
    texts = hostile_json_texts().filter(lambda p: p.size < 100_000)
    return st.one_of(
        st.tuples(
            texts.map(
                lambda p: (
                    p.data.encode("utf-8", "surrogatepass") if isinstance(p.data, str) else p.data
                )
            ),
            st.just("application/json"),
        ),
        st.tuples(
            st.binary(max_size=200),
            st.sampled_from(["application/json", "application/octet-stream"]),
        ),
        st.tuples(
            st.sampled_from([1, 2]).map(
                lambda n: (
                    b"{}" + b" " * (70 * 1024)
                    if n == 1
                    else b'{"details": "' + b"x" * 70_000 + b'"}'
                )
            ),
            st.just("application/json"),
        ),
        st.tuples(
            st.sampled_from(
                [
                    '{"a":1}'.encode("utf-16"),
                    b'{"source":"call","category":"other","details":"\xff"}',
                ]
            ),
            st.just("application/json"),
        ),
    )


# ---- path traversal -----------------------------------------------------------------------------

LEAK_MARKERS = (b"root:x:0:0", b"SQLite format 3", b"from __future__", b"BEGIN PRIVATE KEY")


def traversal_ids() -> st.SearchStrategy[str]:
    """Path segments that try to climb out: raw, percent-encoded, double-encoded, overlong."""
    ups = st.sampled_from(
        [
            "..",
            "%2e%2e",
            "%2E%2E",
            ".%2e",
            "%252e%252e",
            "%c0%ae%c0%ae",
            "....",
            "..\\",
            "%2e%2e%5c",
        ]
    )
    seps = st.sampled_from(["/", "%2f", "%2F", "%252f", "\\", "%5c", "/./", "//"])
    targets = st.sampled_from(
        [
            "etc/passwd",
            "etc%2fpasswd",
            "server/settings.py",
            "data/parloir.sqlite3",
            "parloir.sqlite3",
            "secret.key",
            "pyproject.toml",
        ]
    )
    return st.builds(
        lambda n, up, sep, target, nul: (up + sep) * n + target + nul,
        st.integers(1, 8),
        ups,
        seps,
        targets,
        st.sampled_from(["", "%00", "%00.mp4", "?x=1"]),
    )


def signed_file_query(secret: str, recording_id: str) -> str:
    """A valid signature for any id: the id must still be a recording, signature or not."""
    expires = int(time.time()) + 600
    signature = hmac.new(
        secret.encode(), f"{recording_id}:{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return f"expires={expires}&sig={signature}"


def traversal_targets(segment: str, secret: str) -> list[tuple[str, str]]:
    """(route, request target) for one climbing segment, on every route that maps a path
    segment to something on disk or in the database."""
    unquoted = urllib.parse.unquote(segment)
    return [
        ("/static/{path}", f"/static/{segment}"),
        ("/static/js/{path}", f"/static/js/{segment}"),
        ("/api/recordings/{id}/download", f"/api/recordings/{segment}/download"),
        (
            "/recordings/{id}/file",
            f"/recordings/{segment}/file?{signed_file_query(secret, unquoted)}",
        ),
        ("/recordings/{id}", f"/recordings/{segment}"),
        ("/room/{room}", f"/room/{segment}"),
    ]


def judge_traversal(reply: HttpReply, secrets_: list[str]) -> list[tuple[str, str]]:
    problems = []
    if reply.status >= 500:
        problems.append((f"{reply.status} server error", reply.body[:200].decode(errors="replace")))
    elif 200 <= reply.status < 300:
        problems.append(
            (
                f"{reply.status}: a climbing path was served",
                reply.body[:120].decode(errors="replace"),
            )
        )
    for marker in (*LEAK_MARKERS, *(s.encode() for s in secrets_)):
        if marker in reply.body:
            problems.append(("file or secret leaked", marker.decode(errors="replace")[:40]))
    return problems


def random_room_id() -> str:
    return f"fuzz-{secrets.token_hex(4)}"


async def gather_quietly(*awaitables: Awaitable[Any]) -> None:
    await asyncio.gather(*awaitables, return_exceptions=True)
