"""The signaling fuzz: generated frames on /rtc sockets, joined and not, each answer judged, with
bystanders whose media must not notice."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid

import jwt

from signaling.permissions import Role
from tests.support.fuzz.hang import HANG_TIMEOUT_AFTER_FIRST_S, REPLY_TIMEOUT_S, Hang
from tests.support.fuzz.health import room_problems, server_health_problems
from tests.support.fuzz.media_party import (
    MediaParty,
    TokenFor,
    media_party_problems,
    start_media_party,
)
from tests.support.fuzz.report import FuzzReport
from tests.support.fuzz.rtc_socket import FuzzSocket
from tests.support.fuzz.sdp import real_sdps
from tests.support.fuzz.server_log import LogWatch
from tests.support.fuzz.signaling_frames import SignalingExample, SignalingWorld
from tests.support.fuzz.signaling_judge import expect_signaling, judge_signaling


class JoinFailed(Exception):
    """A valid join was not answered with `joined`."""


class SignalingFuzzer:
    """Sends generated frames over /rtc, before and after a valid join, and judges each answer."""

    def __init__(
        self,
        url: str,
        token_for: TokenFor,
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
        self.report.fail_server_log(self.log.new_problems(), example.describe())

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
