"""What requests to the platform, participant and staff APIs aim at: a scheduled session whose
mentor is in the call, a recording with a file, and credentials of every kind."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from signaling.permissions import Role
from tests.support.fuzz.http_calls import HttpReply, http_request
from tests.support.fuzz.media_party import MediaParty, TokenFor, fixed_token, start_media_party


def security_schemes(operation: dict[str, Any]) -> list[str]:
    """Names of the security schemes an OpenAPI operation accepts, in the document's order."""
    security = operation.get("security") or []
    return [name for requirement in security for name in requirement]


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

    async def start(self, token_for: TokenFor, *, expired_token: str) -> None:
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

        self.party = await start_media_party(
            self.url, fixed_token(self.mentor_token), self.room, with_viewer=False
        )
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

    def stop_started_recording(
        self, method: str, route: str, status: int, read_json: Callable[[], Any]
    ) -> bool:
        """Stop at once a recording that a generated request started (two cores); True if the
        request started one."""
        if not (route.endswith("/recordings") and method.upper() == "POST" and status == 201):
            return False
        with contextlib.suppress(Exception):
            self.call("POST", f"/api/recordings/{read_json()['id']}/stop")
        return True

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
