"""Hostile input on every REST endpoint of the real server process.

Generated runs (small counts here; the full count is `python -m bench.fuzz`):
- schemathesis over the server's own /openapi.json, every operation, positive and negative data,
  the right credential for its auth kind and sometimes a wrong one: never 5xx, never slow;
- our own generator over the same document: every field at its edges (date-times at year 1 and
  9999, naive and aware), and bodies no schema generator writes (too deep, numbers too long);
- the Vonage REST API (not in the OpenAPI document): random JSON and form bodies and JWTs,
  always 2xx or 4xx with a JSON `message`;
- path traversal on every route that maps a path segment to a file or a row: refused.
After each, the server is alive, /healthz answers and a well-behaved pair still gets media.

Below them, each server bug the fuzz found is pinned by its smallest input.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from server.tokens import issue_token
from signaling.permissions import Role
from tests.support import fuzz
from tests.support.server_process import ServerProcess, running_server
from tests.support.vonage_fixtures import API_KEY, API_SECRET

SCALE = float(os.environ.get("PARLOIR_FUZZ_SCALE", "1"))
"""Multiplies the example counts (the full run is bench/fuzz.py)."""
SEED = int(os.environ["PARLOIR_FUZZ_SEED"]) if "PARLOIR_FUZZ_SEED" in os.environ else None


@dataclass
class Target:
    """The server under fuzz, with something in it: a scheduled session whose mentor is in the
    call, a recording with a file, a Vonage session with a participant publishing, an archive."""

    server: ServerProcess
    loop: fuzz.LoopThread
    platform: fuzz.PlatformWorld
    vonage: fuzz.LiveVonageSession
    document: dict

    def log(self) -> fuzz.LogWatch:
        watch = fuzz.LogWatch(self.server.log_path)
        watch.new_problems()
        return watch

    def health_problems(self) -> list[str]:
        problems = [] if self.server.alive() else ["the server died"]
        problems += self.loop.run(fuzz.server_health_problems(self.server.url))
        problems += self.loop.run(
            fuzz.room_problems(self.server.url, self.server.token, fuzz.random_room_id()),
            timeout=120,
        )
        return problems


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("api-fuzz")
    env = {"PARLOIR_VONAGE_API_KEY": API_KEY, "PARLOIR_VONAGE_API_SECRET": API_SECRET}
    with running_server(directory, **env) as server, fuzz.LoopThread() as loop:
        platform = fuzz.PlatformWorld(server.url, server.api_key, server.staff_token)
        expired = issue_token(
            server.secret, room="gone", identity="x", role=Role.PUBLISHER, ttl_s=60, now=10**6
        )
        loop.run(platform.start(server.token, expired_token=expired), timeout=120)
        vonage = fuzz.LiveVonageSession(server.url, API_KEY, API_SECRET)
        loop.run(vonage.start(), timeout=120)
        document = fuzz.http_request(server.url, "GET", "/openapi.json").json()
        try:
            yield Target(server, loop, platform, vonage, document)
        finally:
            loop.run(vonage.stop(), timeout=60)
            loop.run(platform.stop(), timeout=60)


def run_area(target: Target, report: fuzz.FuzzReport, strategy, run_one, examples: int) -> None:
    started = time.monotonic()
    fuzz.explore(strategy, run_one, examples=int(examples * SCALE), seed=SEED)
    report.seconds = time.monotonic() - started
    after = target.health_problems()
    assert not report.findings and not after, (
        report.describe() + "\nafterwards:\n  " + "\n  ".join(after)
    )


def test_every_openapi_operation_answers_without_a_server_error_in_time(target: Target) -> None:
    report = fuzz.FuzzReport("openapi (schemathesis)")
    fuzzer = fuzz.OpenApiFuzzer(target.platform, target.log(), report)
    run_area(target, report, fuzzer.strategy(), fuzzer.run, examples=150)


def test_fields_at_their_edges_never_get_a_server_error(target: Target) -> None:
    report = fuzz.FuzzReport("openapi edge values")
    fuzzer = fuzz.PlatformFuzzer(target.platform, target.log(), report)
    strategy = fuzz.edge_calls(target.document, target.platform)
    run_area(target, report, strategy, fuzzer.run, examples=120)


def test_bodies_no_schema_allows_get_a_json_4xx(target: Target) -> None:
    report = fuzz.FuzzReport("hostile JSON bodies")
    fuzzer = fuzz.PlatformFuzzer(target.platform, target.log(), report)
    strategy = fuzz.hostile_body_calls(target.document, target.platform)
    run_area(target, report, strategy, fuzzer.run, examples=60)


def test_vonage_routes_answer_2xx_or_a_4xx_with_a_json_message(target: Target) -> None:
    report = fuzz.FuzzReport("vonage")
    fuzzer = fuzz.VonageFuzzer(target.vonage, target.loop, target.log(), report)
    run_area(target, report, fuzz.vonage_calls(API_KEY, API_SECRET), fuzzer.run, examples=250)


TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fdata%2fparloir.sqlite3",
    "..%252F..%252Fetc%252Fpasswd",
    "....%2F%2F....%2F%2Fetc%2Fpasswd",
    "..%5C..%5Cserver%5Csettings.py",
    "%c0%ae%c0%ae%2f%c0%ae%c0%ae%2fetc%2fpasswd",
    "..%2F..%2Fsecret.key%00.mp4",
    "../../etc/passwd",
    "../../server/settings.py",
]


@pytest.mark.parametrize("segment", TRAVERSALS)
def test_climbing_paths_are_refused_on_every_file_route(target: Target, segment: str) -> None:
    server = target.server
    log = target.log()
    secrets_ = [server.secret, server.api_key, server.staff_token, API_SECRET]
    auth = {
        "/api/recordings/{id}/download": {"Authorization": f"Bearer {server.api_key}"},
        "/recordings/{id}": {"Authorization": f"Bearer {server.staff_token}"},
    }
    problems = []
    for route, request_target in fuzz.traversal_targets(segment, server.secret):
        reply = fuzz.http_request(server.url, "GET", request_target, headers=auth.get(route, {}))
        problems += [
            f"{route} {request_target}: {k} {d}" for k, d in fuzz.judge_traversal(reply, secrets_)
        ]
    problems += [f"server log: {line}" for _, line in log.new_problems()]
    assert problems == []


def test_generated_climbing_paths_are_refused(target: Target) -> None:
    report = fuzz.FuzzReport("path traversal")
    fuzzer = fuzz.TraversalFuzzer(target.server, target.log(), report, other_secrets=[API_SECRET])
    run_area(target, report, fuzz.traversal_ids(), fuzzer.run, examples=40)


def tiny_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(5):
            picture = np.full((64, 64, 3), index * 40, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("query", "content_type"),
    [
        ("name=..%2F..%2F..%2F..%2Ftmp%2Fowned", "video/mp4"),
        ("name=%2Fetc%2Fcron.d%2Fowned", "video/mp4"),
        ("name=owned", "video/mp4; name=../../../owned.mp4"),
        ("name=owned", "video/../../owned"),
    ],
)
def test_an_upload_stays_inside_its_recording_directory(
    target: Target, tmp_path: Path, query: str, content_type: str
) -> None:
    server, world = target.server, target.platform
    before = {p for p in Path(server.data_dir).parent.rglob("*")}
    reply = fuzz.http_request(
        server.url,
        "POST",
        f"/api/rooms/{world.room}/recordings/upload?{query}",
        headers={"Authorization": f"Bearer {world.mentor_token}", "Content-Type": content_type},
        body=tiny_mp4(),
    )
    assert reply.status in (201, 415), reply
    created = {p for p in Path(server.data_dir).parent.rglob("*")} - before
    recordings = (Path(server.data_dir) / "recordings").resolve()
    outside = [p for p in created if not p.resolve().is_relative_to(recordings)]
    outside = [p for p in outside if p.name not in ("server.log",) and "sqlite" not in p.name]
    assert outside == []
    assert not any("owned" in p.name for p in created)
    if reply.status == 201:
        recording = reply.json()
        download = fuzz.http_request(
            server.url,
            "GET",
            f"/api/recordings/{recording['id']}/download",
            headers={"Authorization": f"Bearer {server.api_key}"},
        )
        assert download.status == 200 and download.body == tiny_mp4()
        disposition = download.headers["content-disposition"]
        assert ".." not in disposition and "/" not in disposition.split("filename=")[1]


# ---- the bugs the fuzz found, each pinned by its smallest input ---------------------------------


def platform_call(
    target: Target, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> fuzz.HttpReply:
    headers: dict[str, str | bytes] = {"Authorization": f"Bearer {token or target.server.api_key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return fuzz.http_request(target.server.url, method, path, headers=headers, body=body)


def vonage_call(target: Target, method: str, path: str, body: object = None) -> fuzz.HttpReply:
    headers: dict[str, str | bytes] = {"X-OPENTOK-AUTH": fuzz.vonage_jwt(API_KEY, API_SECRET)}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = fuzz.http_request(target.server.url, method, path, headers=headers, body=data)
    if reply.status == 200 and method == "POST" and path.endswith("/archive"):
        target.vonage.stop_archive(reply.json()["id"])  # it was accepted: do not leave it running
    return reply


DEEP = b'{"a":' * 2000 + b"1" + b"}" * 2000
LONG_NUMBER = b'{"source":' + b"9" * 4301 + b"}"


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        LONG_NUMBER,
        b'{"a":' * 100 + b"1" + b"}" * 100,
        b'{"type": NaN}',
        b'{"type": "\\ud800"}',
    ],
    ids=["2000-deep", "4301-digit-number", "100-deep", "NaN", "lone-surrogate"],
)
@pytest.mark.parametrize(
    "route",
    ["POST /api/sessions", "POST /api/staff/login", "POST /v2/project/{key}/archive"],
)
def test_a_body_the_json_parser_chokes_on_gets_a_400_not_a_500(
    target: Target, route: str, body: bytes
) -> None:
    # Found by the fuzz: server/api.py _json_body and routes_vonage.read_json only catch
    # JSONDecodeError/UnicodeDecodeError; json.loads raises RecursionError for deep nesting and
    # ValueError past 4300 digits, which become 500 with an ERROR traceback.
    # Also refused by the one JSON reader now: nesting json.loads survives but a handler's own
    # stack (re-encoding, a schema) might not, NaN (not JSON), a lone surrogate (SQLite cannot
    # store it).
    log = target.log()
    method, path = route.split()
    path = path.format(key=API_KEY)
    if path.startswith("/v2/"):
        reply = vonage_call(target, method, path, body)
    else:
        reply = platform_call(target, method, path, body)
    assert reply.status == 400, (reply.status, reply.body[:200])
    assert isinstance(reply.json().get("message"), str)
    assert log.new_problems() == []


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`parloir serve --workers 2`: the edge proxying to two worker processes."""
    env = {"PARLOIR_VONAGE_API_KEY": API_KEY, "PARLOIR_VONAGE_API_SECRET": API_SECRET}
    with running_server(tmp_path_factory.mktemp("edge"), PARLOIR_WORKERS="2", **env) as server:
        yield server


def test_the_edge_before_workers_passes_a_choking_body_on_for_a_400(
    edge_server: ServerProcess,
) -> None:
    # With --workers, the edge peeks into an archive start's body for its session (to route it
    # to the room's worker) with its own json.loads: RecursionError there was a 500.
    log = fuzz.LogWatch(edge_server.log_path)
    headers: dict[str, str | bytes] = {
        "X-OPENTOK-AUTH": fuzz.vonage_jwt(API_KEY, API_SECRET),
        "Content-Type": "application/json",
    }
    for body in (DEEP, LONG_NUMBER):
        reply = fuzz.http_request(
            edge_server.url, "POST", f"/v2/project/{API_KEY}/archive", headers=headers, body=body
        )
        assert reply.status == 400, (reply.status, reply.body[:200])
        assert isinstance(reply.json().get("message"), str)
    assert log.new_problems() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/rooms/a%0Ab/report",
        "/api/sessions/a%0Ab/bug-reports",
        f"/v2/project/{API_KEY}%0A/session/x/stream",
    ],
)
def test_the_edge_before_workers_proxies_a_path_with_a_newline(
    edge_server: ServerProcess, path: str
) -> None:
    # Found by the fuzz with PARLOIR_WORKERS=2: the edge's catch-all route `/{tail:.*}` did not
    # match a decoded %0A, so the edge answered its own text 404 instead of the API's JSON.
    headers: dict[str, str | bytes] = {
        "Authorization": f"Bearer {edge_server.api_key}",
        "X-OPENTOK-AUTH": fuzz.vonage_jwt(API_KEY, API_SECRET),
    }
    reply = fuzz.http_request(edge_server.url, "GET", path, headers=headers)
    assert 400 <= reply.status < 500
    assert isinstance(reply.json().get("message"), str), reply.body[:200]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"layout": "bestFit"}, "layout is a string: AttributeError"),
        ({"layout": [1]}, "layout is a list: AttributeError"),
        ({"name": {"a": 1}, "outputMode": "individual"}, "name is an object: sqlite binding"),
        ({"multiArchiveTag": [1], "outputMode": "individual"}, "tag is a list: sqlite binding"),
    ],
)
def test_a_vonage_archive_with_mistyped_options_is_a_400(
    target: Target, fields: dict, why: str
) -> None:
    # Found by the fuzz: server/vonage_archives.start_archive uses body values unchecked, after
    # the recording service has made the archive's directory (left behind, empty).
    log = target.log()
    recordings = Path(target.server.data_dir) / "recordings"
    before = set(recordings.iterdir())
    body = {"sessionId": target.vonage.session_id, **fields}
    reply = vonage_call(target, "POST", f"/v2/project/{API_KEY}/archive", body)
    assert reply.status == 400, (why, reply.status, reply.body[:200])
    assert isinstance(reply.json().get("message"), str)
    assert set(recordings.iterdir()) == before
    assert log.new_problems() == []


def test_listing_archives_from_an_offset_past_sqlite_integers_is_not_a_500(target: Target) -> None:
    # Found by the fuzz: OverflowError (Python int too large to convert to SQLite INTEGER).
    log = target.log()
    reply = vonage_call(target, "GET", f"/v2/project/{API_KEY}/archive?offset=99999999999999999999")
    assert reply.status in (200, 400), (reply.status, reply.body[:200])
    assert log.new_problems() == []


def session_body(start: object, end: object) -> bytes:
    return json.dumps(
        {
            "type": "mentoring",
            "scheduled_start": start,
            "scheduled_end": end,
            "mentor": {"identity": "m", "name": "M"},
            "student": {"identity": "s", "name": "S"},
        }
    ).encode()


@pytest.mark.parametrize(
    ("path", "content_type", "body", "expect"),
    [
        pytest.param(
            "/api/sessions",
            "application/json",
            session_body("2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
            b"HTTP/1.1 201",
            id="platform-json",
        ),
        pytest.param(
            "/session/create",
            "application/x-www-form-urlencoded",
            b"p2p.preference=disabled&archiveMode=always&archiveResolution=bad",
            b"HTTP/1.1 400",  # only the whole body has the bad resolution
            id="vonage-form",
        ),
    ],
)
def test_a_body_arriving_in_several_packets_is_read_whole(
    target: Target, path: str, content_type: str, body: bytes, expect: bytes
) -> None:
    # The body readers took what `content.read(n)` returned first: a body sent in pieces was
    # cut, then answered "not valid JSON" (or, for the form, read without its last fields).
    if path.startswith("/api/"):
        auth = f"Authorization: Bearer {target.server.api_key}"
    else:
        auth = f"X-OPENTOK-AUTH: {fuzz.vonage_jwt(API_KEY, API_SECRET)}"
    host, port = urllib.parse.urlsplit(target.server.url).netloc.split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"{auth}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body[:20])
        time.sleep(0.3)
        sock.sendall(body[20:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(expect), answer[:300]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(
            "POST", "/api/sessions", session_body(0, "2030-01-01T10:00:00"), id="naive-vs-aware"
        ),
        pytest.param(
            "POST",
            "/api/sessions",
            session_body("0001-01-01T00:00:00", "0001-01-01T01:00:00"),
            id="naive-year-1",
        ),
        pytest.param("GET", "/api/sessions?start_from=0001-01-01T00:00:00", None, id="list-from"),
        pytest.param(
            "GET", "/api/staff/billing?start_from=0001-01-01T00:00:00", None, id="billing-from"
        ),
        pytest.param(
            "GET",
            "/api/staff/bug-reports?created_from=0001-01-01T00:00:00",
            None,
            id="bug-reports-from",
        ),
    ],
)
def test_a_date_time_python_cannot_turn_into_a_timestamp_is_a_4xx(
    target: Target, method: str, path: str, body: bytes | None
) -> None:
    # Found by the fuzz: a naive date-time is taken as local time and `.timestamp()` raises
    # ValueError (year 0) near year 1; comparing a naive with an aware one raises TypeError.
    log = target.log()
    token = target.server.staff_token if "/staff/" in path else None
    reply = platform_call(target, method, path, body, token=token)
    assert reply.status < 500, (reply.status, reply.body[:200])
    assert log.new_problems() == []


def test_a_session_at_the_end_of_time_does_not_break_the_billing_view(target: Target) -> None:
    # Found by the fuzz: 9999-12-31T23:59:59-23:59 is accepted and stored as a Unix time past
    # year 9999 in UTC; the billing view's datetime.fromtimestamp(..., UTC) then raises for
    # every later request: one bad session takes the billing view down for good.
    log = target.log()
    created = platform_call(
        target,
        "POST",
        "/api/sessions",
        session_body("9999-12-31T22:00:00-23:59", "9999-12-31T23:59:59-23:59"),
    )
    billing = platform_call(target, "GET", "/api/staff/billing", token=target.server.staff_token)
    assert created.status >= 400 or billing.status == 200, (billing.status, billing.body[:200])
    assert log.new_problems() == []


def test_a_session_stored_past_year_9999_does_not_break_the_billing_view(target: Target) -> None:
    # The edge now refuses such dates, but a database written before that may hold one: the
    # billing view shows the row without a date instead of failing for every request.
    created = platform_call(
        target,
        "POST",
        "/api/sessions",
        session_body("2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"),
    )
    assert created.status == 201, created.body[:200]
    session_id = created.json()["id"]
    with sqlite3.connect(Path(target.server.data_dir) / "parloir.sqlite3", timeout=10) as db:
        db.execute(
            "UPDATE sessions SET scheduled_start = ?, scheduled_end = ? WHERE id = ?",
            (253_402_387_139.0, 253_402_387_199.0, session_id),
        )
    log = target.log()
    staff = target.server.staff_token
    billing = platform_call(target, "GET", "/api/staff/billing?limit=5000", token=staff)
    assert billing.status == 200, (billing.status, billing.body[:200])
    row = next(r for r in billing.json()["items"] if r["session_id"] == session_id)
    assert row["scheduled_start"] is None
    csv_export = platform_call(target, "GET", "/api/staff/billing.csv?limit=5000", token=staff)
    assert csv_export.status == 200 and session_id.encode() in csv_export.body
    assert log.new_problems() == []


def test_an_over_long_request_line_is_refused_without_an_error_traceback(target: Target) -> None:
    # Found by the fuzz: aiohttp refuses request lines over 8190 bytes itself (400, text), and
    # logs each one at ERROR with a traceback: any client can flood the error log.
    log = target.log()
    before = target.server.log().count("refused a malformed request")
    path = f"/v2/project/{API_KEY}/archive/" + "a" * 9000
    reply = fuzz.http_request(target.server.url, "GET", urllib.parse.quote(path))
    assert 400 <= reply.status < 500
    assert isinstance(reply.json().get("message"), str), reply.body[:200]  # as every API error
    assert b"aaaa" not in reply.body  # not the client's bytes echoed back
    assert log.new_problems() == []
    time.sleep(0.2)
    lines = target.server.log().splitlines()
    warnings = [line for line in lines if "refused a malformed request" in line]
    assert len(warnings) == before + 1 and "aaaa" not in warnings[-1], warnings[-2:]
