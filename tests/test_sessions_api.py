"""Sessions, telemetry, bug reports and reports through the real server and real peers."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient
from tests.support.server_process import ServerProcess, running_server
from tests.support.sessions import schedule


class Api:
    """The platform's, a participant's or staff's view of the HTTP API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, credential: str | None) -> None:
        self.session, self.base, self.credential = session, base, credential

    async def call(
        self, method: str, path: str, body: Any = None, expect: int | None = None
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.credential}"} if self.credential else {}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as r:
            payload = await r.json() if r.content_type == "application/json" else await r.text()
            if expect is not None:
                assert r.status == expect, (r.status, payload)
            return payload


@pytest.fixture
async def http(server: ServerProcess):
    async with aiohttp.ClientSession() as session:
        yield session


async def join_with(server: ServerProcess, link: dict[str, Any]) -> ParloirClient:
    client = ParloirClient(server.url, token=link["token"], room=link["room_id"])
    await client.connect()
    return client


async def test_both_parties_talking_for_n_seconds_gives_that_effective_duration(
    server, http
) -> None:
    platform = Api(http, server.url, server.api_key)
    session = await platform.call("POST", "/api/sessions", schedule(), expect=201)
    assert session["status"] == "planned" and session["metrics"]["video_used"] is False
    links = {
        p: await platform.call(
            "POST", f"/api/sessions/{session['id']}/tokens", {"party": p}, expect=201
        )
        for p in ("mentor", "student")
    }
    assert links["mentor"]["url"].endswith(
        f"/room/{session['room_id']}?token={links['mentor']['token']}"
    )
    mentor = await join_with(server, links["mentor"])
    await mentor.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
    await asyncio.sleep(1.0)
    together_from = time.time()
    student = await join_with(server, links["student"])
    await student.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
    await asyncio.sleep(4.0)
    together_until = time.time()
    await student.leave()
    await asyncio.sleep(0.5)
    await mentor.leave()
    await asyncio.sleep(0.5)
    detail = await platform.call("GET", f"/api/sessions/{session['id']}", expect=200)
    metrics = detail["metrics"]
    expected = together_until - together_from
    assert metrics["video_used"] is True
    assert abs(metrics["effective_duration_s"] - expected) < 1.0, (metrics, expected)
    assert metrics["time_in_call_s"]["mentor-7"] > metrics["time_in_call_s"]["student-9"] > 3.5
    assert metrics["suggested_status"] == "completed"
    kinds = [
        e["kind"]
        for e in (
            await platform.call("GET", f"/api/sessions/{session['id']}/telemetry", expect=200)
        )["items"]
    ]
    for kind in ("call_joined", "published", "media_started", "media_stopped", "call_left"):
        assert kind in kinds, kinds


async def test_report_of_a_session_nobody_joined_needs_a_reason(server, http) -> None:
    platform = Api(http, server.url, server.api_key)
    session = await platform.call("POST", "/api/sessions", schedule(-7200), expect=201)
    link = await platform.call("POST", f"/api/sessions/{session['id']}/tokens", {"party": "mentor"})
    mentor = Api(http, server.url, link["token"])
    room = session["room_id"]
    view = await mentor.call("GET", f"/api/rooms/{room}/report", expect=200)
    assert view["reason_required"] is True and view["report"] is None
    await mentor.call("POST", f"/api/rooms/{room}/report/validate", {}, expect=409)
    await mentor.call(
        "PUT",
        f"/api/rooms/{room}/report",
        {"status": "completed", "notes": "Held by phone."},
        expect=200,
    )
    refused = await mentor.call("POST", f"/api/rooms/{room}/report/validate", {}, expect=422)
    assert refused["error"] == "reason-required"
    refused = await mentor.call(
        "POST", f"/api/rooms/{room}/report/validate", {"reason": "accommodation_need"}, expect=422
    )
    assert refused["error"] == "no-accommodation-on-file"
    await platform.call(
        "PUT", "/api/students/student-9/profile", {"accommodation_need": True}, expect=200
    )
    done = await mentor.call(
        "POST", f"/api/rooms/{room}/report/validate", {"reason": "accommodation_need"}, expect=200
    )
    assert (
        done["report"]["validated"]
        and done["report"]["video_unused_reason"] == "accommodation_need"
    )
    assert done["session"]["status"] == "completed"
    await mentor.call(
        "POST",
        f"/api/rooms/{room}/report/validate",
        {"reason": "other", "details": "again"},
        expect=409,
    )
    student_link = await platform.call(
        "POST", f"/api/sessions/{session['id']}/tokens", {"party": "student"}
    )
    student = Api(http, server.url, student_link["token"])
    assert (await student.call("GET", f"/api/rooms/{room}/report", expect=403))[
        "error"
    ] == "forbidden"


async def test_blocking_bug_report_tags_exception_once_feedback_never(server, http) -> None:
    platform = Api(http, server.url, server.api_key)
    session = await platform.call("POST", "/api/sessions", schedule(), expect=201)
    other = await platform.call("POST", "/api/sessions", schedule(type_="defence"), expect=201)
    link = await platform.call(
        "POST", f"/api/sessions/{session['id']}/tokens", {"party": "student"}
    )
    student = Api(http, server.url, link["token"])
    room = session["room_id"]
    await student.call(
        "POST",
        f"/api/rooms/{room}/connection-test",
        {"rtt_ms": 42.0, "packet_loss": 0.01, "mos": 4.1},
        expect=201,
    )
    categories = await student.call("GET", f"/api/rooms/{room}/bug-categories", expect=200)
    assert {"id": "no_sound", "label": "No sound"} in categories["items"]
    filed = await student.call(
        "POST",
        f"/api/rooms/{room}/bug-reports",
        {"source": "call", "category": "no_sound", "details": "silence"},
        expect=201,
    )
    assert filed["exception_tagged"] and filed["session"]["tags"] == ["Exception"]
    assert filed["report"]["diagnostics"]["connection_test"]["rtt_ms"] == 42.0
    again = await student.call(
        "POST",
        f"/api/rooms/{room}/bug-reports",
        {"source": "after_call", "category": "other"},
        expect=201,
    )
    assert again["session"]["tags"] == ["Exception"]
    other_link = await platform.call(
        "POST", f"/api/sessions/{other['id']}/tokens", {"party": "student"}
    )
    other_student = Api(http, server.url, other_link["token"])
    feedback = await other_student.call(
        "POST",
        f"/api/rooms/{other['room_id']}/feedback",
        {"source": "after_call", "rating": 4, "details": "ok"},
        expect=201,
    )
    assert feedback["exception_tagged"] is False and feedback["session"]["tags"] == []
    # Bad input: clear 4xx, nothing stored.
    bad = await student.call(
        "POST",
        f"/api/rooms/{room}/bug-reports",
        {"source": "call", "category": "aliens"},
        expect=422,
    )
    assert bad["error"] == "unknown-category"
    await student.call(
        "POST",
        f"/api/rooms/{room}/bug-reports",
        {"source": "call", "category": "echo", "details": "x" * 2001},
        expect=422,
    )
    await student.call(
        "POST",
        f"/api/rooms/{other['room_id']}/bug-reports",
        {"source": "call", "category": "echo"},
        expect=403,
    )
    await Api(http, server.url, None).call(
        "POST", f"/api/rooms/{room}/bug-reports", {"source": "call", "category": "echo"}, expect=401
    )
    reports = await platform.call("GET", f"/api/sessions/{session['id']}/bug-reports", expect=200)
    assert [r["category"] for r in reports["items"]] == ["no_sound", "other"]


async def test_staff_pages_need_staff_credentials_and_export_billing(server, http) -> None:
    platform = Api(http, server.url, server.api_key)
    session = await platform.call("POST", "/api/sessions", schedule(), expect=201)
    link = await platform.call("POST", f"/api/sessions/{session['id']}/tokens", {"party": "mentor"})
    await Api(http, server.url, link["token"]).call(
        "POST",
        f"/api/rooms/{session['room_id']}/bug-reports",
        {"source": "waiting_room", "category": "cannot_join"},
        expect=201,
    )
    for credential in (None, link["token"], server.api_key):
        await Api(http, server.url, credential).call("GET", "/api/staff/bug-reports", expect=401)
    staff = Api(http, server.url, server.staff_token)
    listed = await staff.call("GET", "/api/staff/bug-reports?category=cannot_join", expect=200)
    assert listed["total"] == 1 and listed["items"][0]["session"]["tags"] == ["Exception"]
    assert (await staff.call("GET", "/api/staff/bug-reports?category=echo"))["total"] == 0
    await staff.call("GET", "/api/staff/bug-reports?limit=0", expect=422)
    async with http.post(f"{server.url}/api/staff/login", json={"token": server.staff_token}) as r:
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    async with http.get(
        f"{server.url}/api/staff/billing.csv",
        headers={"Authorization": f"Bearer {server.staff_token}"},
    ) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert rows[0]["session_id"] == session["id"] and rows[0]["tags"] == "Exception"
    assert rows[0]["effective_duration_min"] == "0.0" and rows[0]["video_used"] == "False"


async def test_platform_api_refuses_bad_input_clearly(server, http) -> None:
    platform = Api(http, server.url, server.api_key)
    await Api(http, server.url, "wrong").call("GET", "/api/sessions", expect=401)
    bad = await platform.call(
        "POST", "/api/sessions", {**schedule(), "scheduled_end": 0}, expect=422
    )
    assert "scheduled_end" in bad["message"]
    await platform.call("POST", "/api/sessions", {**schedule(), "type": "party"}, expect=422)
    await platform.call("GET", "/api/sessions/nope", expect=404)
    await platform.call("GET", "/api/sessions?limit=1000", expect=422)
    async with http.post(
        f"{server.url}/api/sessions",
        data=b"{oops",
        headers={"Authorization": f"Bearer {server.api_key}"},
    ) as r:
        assert r.status == 400 and (await r.json())["error"] == "malformed"
    async with http.post(
        f"{server.url}/api/sessions",
        data=b"x" * 70_000,
        headers={"Authorization": f"Bearer {server.api_key}"},
    ) as r:
        assert r.status == 413
    async with http.get(f"{server.url}/api/nothing-here") as r:
        assert r.status == 404 and (await r.json())["error"]
    async with http.get(f"{server.url}/openapi.json") as r:
        spec = await r.json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/sessions",
        "/api/rooms/{room}/bug-reports",
        "/api/staff/billing.csv",
        "/api/rooms/{room}/report/validate",
    ):
        assert path in spec["paths"]
    assert "SessionCreate" in spec["components"]["schemas"]


async def test_bug_report_survives_kill_9_right_after_it_was_acknowledged(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        async with aiohttp.ClientSession() as http:
            platform = Api(http, server.url, server.api_key)
            session = await platform.call("POST", "/api/sessions", schedule(), expect=201)
            link = await platform.call(
                "POST", f"/api/sessions/{session['id']}/tokens", {"party": "mentor"}
            )
            await Api(http, server.url, link["token"]).call(
                "POST",
                f"/api/rooms/{session['room_id']}/bug-reports",
                {"source": "call", "category": "no_video", "details": "black screen"},
                expect=201,
            )
            server.process.kill()  # SIGKILL, right after the acknowledgement
            server.process.wait()
    with running_server(tmp_path) as restarted:
        async with aiohttp.ClientSession() as http:
            platform = Api(http, restarted.url, restarted.api_key)
            detail = await platform.call("GET", f"/api/sessions/{session['id']}", expect=200)
            reports = await platform.call("GET", f"/api/sessions/{session['id']}/bug-reports")
    assert detail["tags"] == ["Exception"]
    assert [r["details"] for r in reports["items"]] == ["black screen"]


async def test_kill_9_during_a_defence_keeps_what_was_committed_and_stops_the_clock(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path) as server:
        async with aiohttp.ClientSession() as http:
            platform = Api(http, server.url, server.api_key)
            session = await platform.call(
                "POST", "/api/sessions", schedule(type_="defence"), expect=201
            )
            links = {
                p: await platform.call(
                    "POST", f"/api/sessions/{session['id']}/tokens", {"party": p}, expect=201
                )
                for p in ("mentor", "student")
            }
            mentor = await join_with(server, links["mentor"])
            student = await join_with(server, links["student"])
            joined_at = time.time()
            await mentor.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
            await student.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 15))
            await student.wait_for_type("recording-started")
            await asyncio.sleep(3.0)  # media seen flowing by the server's 1 s sampler
            await Api(http, server.url, links["student"]["token"]).call(
                "POST",
                f"/api/rooms/{session['room_id']}/bug-reports",
                {"source": "call", "category": "no_sound", "details": "mentor inaudible"},
                expect=201,
            )
            killed_at = time.time()
            server.process.kill()  # SIGKILL mid-call: nobody left, no media_stopped written
            server.process.wait()
            await asyncio.gather(mentor.close(), student.close())
    with running_server(tmp_path) as restarted:
        async with aiohttp.ClientSession() as http:
            platform = Api(http, restarted.url, restarted.api_key)
            detail = await platform.call("GET", f"/api/sessions/{session['id']}", expect=200)
            events = (await platform.call("GET", f"/api/sessions/{session['id']}/telemetry"))[
                "items"
            ]
            recordings = await platform.call("GET", f"/api/recordings?session_id={session['id']}")
            await asyncio.sleep(2.0)
            later = await platform.call("GET", f"/api/sessions/{session['id']}", expect=200)
    assert detail["tags"] == ["Exception"]
    metrics = detail["metrics"]
    assert metrics["video_used"] is True
    for identity in ("mentor-7", "student-9"):
        # Closed at the last sign of life before the kill, not counting on after it.
        assert 0 < metrics["time_in_call_s"][identity] <= killed_at - joined_at + 0.5, metrics
    assert later["metrics"] == metrics, "a crashed call's clock must not keep running"
    stopped = [e for e in events if e["data"].get("reason") == "serverStopped"]
    assert {e["kind"] for e in stopped} == {"call_left", "media_stopped"}, stopped
    assert {e["identity"] for e in stopped if e["kind"] == "call_left"} == {"mentor-7", "student-9"}
    [recording] = recordings["items"]
    assert recording["status"] == "failed" and recording["duration_s"] > 2.0, recording


async def test_suspected_fallback_offers_the_mentor_a_prefilled_report(tmp_path: Path) -> None:
    env = {"PARLOIR_RECONNECT_GRACE_S": "0.5", "PARLOIR_ROOM_GRACE_S": "0.5"}
    with running_server(tmp_path, **env) as server:
        async with aiohttp.ClientSession() as http:
            platform = Api(http, server.url, server.api_key)
            session = await platform.call("POST", "/api/sessions", schedule(), expect=201)
            links = {
                p: await platform.call(
                    "POST", f"/api/sessions/{session['id']}/tokens", {"party": p}, expect=201
                )
                for p in ("mentor", "student")
            }
            mentor = await join_with(server, links["mentor"])
            student = await join_with(server, links["student"])
            await mentor.publish(video=PaintedVideoTrack(320, 240, 15))
            await student.publish(video=PaintedVideoTrack(320, 240, 15))
            await asyncio.sleep(2.5)  # media seen flowing by the server's 1 s sampler
            # Both vanish without hanging up, long before the scheduled end: the call moved.
            await asyncio.gather(mentor.close(), student.close())
            for _ in range(60):
                detail = await platform.call("GET", f"/api/sessions/{session['id']}")
                if "suspected_fallback" in detail["tags"]:
                    break
                await asyncio.sleep(0.1)  # noqa: ASYNC110 - waiting on the server's room close
            assert detail["tags"] == ["suspected_fallback"], detail
            assert any("never resumed" in e for e in detail["fallback_evidence"])
            room = session["room_id"]
            as_mentor = Api(http, server.url, links["mentor"]["token"])
            offered = await as_mentor.call("GET", f"/api/rooms/{room}/bug-categories")
            assert "never resumed" in offered["suggestion"]["details"]
            as_student = Api(http, server.url, links["student"]["token"])
            assert (await as_student.call("GET", f"/api/rooms/{room}/bug-categories"))[
                "suggestion"
            ] is None
            filed = await as_mentor.call(
                "POST",
                f"/api/rooms/{room}/bug-reports",
                {
                    "source": "after_call",
                    "category": "other",
                    "details": offered["suggestion"]["details"],
                },
                expect=201,
            )
            assert filed["session"]["tags"] == ["Exception"]
            assert (await as_mentor.call("GET", f"/api/rooms/{room}/bug-categories"))[
                "suggestion"
            ] is None
