"""A bare /rtc WebSocket for hostile frames, recording everything the server sends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from signaling.connection import MESSAGE_BURST, MESSAGES_PER_S
from tests.support.fuzz.hang import REPLY_TIMEOUT_S, Hang
from tests.support.fuzz.payloads import Payload
from tests.support.fuzz.send_budget import SendBudget
from tests.support.fuzz.signaling_frames import OWN_PUBLICATION


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
        return await self._send_frame(data)

    async def _send_frame(self, data: str | bytes) -> bool:
        """One text frame, or a binary one for bytes; False if the socket is closed."""
        if self.closed or self.ws.closed:
            return False
        self.budget.spend(1)
        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)
            return True
        except (ConnectionError, RuntimeError):
            return False

    async def send(self, payload: Payload) -> bool:
        data = payload.data
        if isinstance(data, str) and OWN_PUBLICATION in data:
            own = self.own_publications[-1] if self.own_publications else "no-own-publication"
            data = data.replace(OWN_PUBLICATION, own)
        return await self._send_frame(data)

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
