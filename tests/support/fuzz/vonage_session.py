"""The Vonage fuzz: a live session, an idle one and an archive for generated requests to aim at,
and the fuzzer that sends them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from tests.support.fuzz.http_calls import ApiCall, HttpReply, http_request, judged_call
from tests.support.fuzz.loop_thread import LoopThread
from tests.support.fuzz.media_party import MediaParty, fixed_token, start_media_party
from tests.support.fuzz.report import FuzzReport
from tests.support.fuzz.server_log import LogWatch
from tests.support.fuzz.vonage_requests import (
    ARCHIVE,
    IDLE_SESSION,
    KNOWN_ARCHIVE,
    LIVE_CONNECTION,
    LIVE_SESSION,
    LIVE_STREAM,
    PLACEHOLDERS,
)
from tests.support.fuzz.vonage_tokens import client_token, vonage_jwt


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

        token = client_token(self.api_key, self.secret, self.session_id, role="publisher")
        self.party = await start_media_party(
            self.url, fixed_token(token), self.session_id, with_viewer=False
        )
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
        for placeholder in PLACEHOLDERS:
            if placeholder.encode() in body:
                body = body.replace(placeholder.encode(), self.resolve(placeholder).encode())
        return body

    async def stop(self) -> None:
        if self.party is not None:
            await self.party.leave()


class VonageFuzzer:
    """Sends generated requests to the Vonage REST API, aimed at the live session, and judges
    each answer."""

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
        reply = judged_call(
            self.live.url,
            call,
            self.report,
            target=call.target(self.live.resolve),
            body=self.live.resolve_body(call.body),
        )
        if reply is None:
            return
        if call.route == ARCHIVE + "/{archive}" and call.method == "DELETE" and reply.status == 204:
            if dict(call.params).get("archive") == KNOWN_ARCHIVE:
                self.loop.run(self.live.new_archive(), timeout=60)
                self.report.notes["known archive deleted (then another made)"] += 1
        if call.route == ARCHIVE and call.method == "POST" and reply.status == 200:
            archive = reply.json()
            if isinstance(archive, dict) and archive.get("status") == "started":
                self.live.stop_archive(str(archive["id"]))
                self.report.notes["archive started (then stopped)"] += 1
        self.report.fail_server_log(self.log.new_problems(), call.describe())
