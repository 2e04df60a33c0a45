"""One HTTP request sent exactly as generated (`ApiCall`, `http_request`), and the judge of its
answer."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.fuzz.hang import REPLY_TIMEOUT_S, Hang
from tests.support.fuzz.report import FuzzReport

RESPONSE_TIME_BOUND_S = 5.0
"""A REST answer slower than this is a failure (loopback, nothing else running)."""


@dataclass
class HttpReply:
    """What the server answered to one request, and how long it took."""

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
    headers: Mapping[str, str | bytes] | None = None,
    body: bytes | None = None,
    timeout: float = REPLY_TIMEOUT_S,
) -> HttpReply:
    """Exactly this request line, headers and body (no client-side normalisation of `../`)."""
    parsed = urllib.parse.urlsplit(base_url)
    assert parsed.hostname is not None, f"no host in {base_url!r}"
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


def path_parameters(template: str) -> list[str]:
    """Names of the `{parameters}` of a route template, in order."""
    return re.findall(r"{(\w+)}", template)


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


def judged_call(
    base_url: str, call: ApiCall, report: FuzzReport, *, target: str, body: bytes | None
) -> HttpReply | None:
    """Send `call` to `target` with `body` (its placeholders filled in), count it and record what
    is wrong with the answer; None if no answer came."""
    report.inputs += 1
    label = f"{call.method} {call.route}"
    try:
        reply = http_request(base_url, call.method, target, headers=dict(call.headers), body=body)
    except Hang as exc:
        report.fail(f"no answer (hang) [{label}]", str(exc), call.describe())
        return None
    for kind, detail in judge_http(reply):
        where = "" if "any route" in kind else f" [{label}]"
        report.fail(f"{kind}{where}", detail, call.describe())
    return reply
