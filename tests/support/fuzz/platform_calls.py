"""Our own requests built from /openapi.json: every field at its edges, and bodies no schema
generator would write."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from hypothesis import strategies as st

from tests.support.fuzz.http_calls import ApiCall, judged_call, path_parameters
from tests.support.fuzz.payloads import hostile_json_texts
from tests.support.fuzz.platform_world import PlatformWorld, security_schemes
from tests.support.fuzz.report import FuzzReport
from tests.support.fuzz.schema_values import from_schema
from tests.support.fuzz.server_log import LogWatch
from tests.support.fuzz.values import recursion_safe_dumps


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
            params = tuple((n, pins.get(n, "x")) for n in path_parameters(path))
            schemes = security_schemes(operation)
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
        query_fields = {
            p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"
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
            from_schema(body_ref, components, {}).map(lambda b: recursion_safe_dumps(b).encode())
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
        reply = judged_call(self.world.url, call, self.report, target=call.target(), body=call.body)
        if reply is None:
            return
        if self.world.stop_started_recording(call.method, call.route, reply.status, reply.json):
            self.report.notes["recording started (then stopped)"] += 1
        self.report.fail_server_log(self.log.new_problems(), call.describe())


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
