"""A Python participant speaking PROTOCOL.md with aiortc peers: tests, benchmarks, load tools.

It is the same protocol the browser client speaks, so what passes here passes the server's
validation for real clients too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)


class ServerError(Exception):
    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('reason')}")
        self.code = message.get("code")
        self.reason = message.get("reason")


@dataclass
class ReceivedTrack:
    publication_id: str
    participant_id: str
    kind: str
    track: PublicationTrack
    """This publication's frames only: ends when its m-line stops carrying it."""
    receiver: RTCRtpReceiver
    """The m-line's receiver (it may carry other publications before and after this one)."""


RTP_TIMESTAMP_MODULO = 1 << 32


class SubscriberLine:
    """One subscriber m-line: its receiver, and the track of the publication it carries now.

    The server reuses an m-line for a later publication (PROTOCOL.md "M-lines are reused"),
    while aiortc keeps one receiver track per m-line. That track still holds frames of the
    previous publication: decoded but never read, and the last one held back by aiortc's
    jitter buffer until the next frame's first packet comes (it ignores the marker bit), which
    is the new publication's. So each publication gets its own `PublicationTrack`, which skips
    every frame whose RTP timestamp is not newer than the last packet received before the
    switch: the server sends the new publication only after the client has answered the offer
    that announces it, with later timestamps (`media/slot_track.py`).
    """

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        assert receiver.track is not None
        self.receiver = receiver
        self.source: MediaStreamTrack = receiver.track
        self.carrying: tuple[str, str] | None = None
        """(publication id, kind) of the publication the m-line carries now, if any."""
        self.track: PublicationTrack | None = None
        self._first_timestamp: int | None = None
        self._newest_timestamp: int | None = None
        # The DTLS transport calls the receiver's handler by attribute, for every RTP packet.
        handle = receiver._handle_rtp_packet

        async def watched(packet: RtpPacket, arrival_time_ms: int) -> None:
            self._saw(packet.timestamp)
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = watched  # type: ignore[method-assign]

    def _saw(self, timestamp: int) -> None:
        if self._first_timestamp is None:
            self._first_timestamp = timestamp
        newest = self._newest_timestamp
        if newest is None or 0 < (timestamp - newest) % RTP_TIMESTAMP_MODULO < 1 << 31:
            self._newest_timestamp = timestamp  # a retransmission is never newer

    def carry(self, publication: tuple[str, str]) -> PublicationTrack:
        """The m-line carries `publication` from now on: a new track, the previous one ends."""
        self.end()
        after = None
        if self._first_timestamp is not None and self._newest_timestamp is not None:
            # aiortc's receiver gives frames pts = RTP timestamp - the first one (unwrapped).
            after = (self._newest_timestamp - self._first_timestamp) % RTP_TIMESTAMP_MODULO
        self.carrying = publication
        self.track = PublicationTrack(self, after)
        return self.track

    def end(self) -> None:
        """The publication it carried ended (the m-line went inactive)."""
        if self.track is not None:
            self.track.stop()
        self.carrying = None
        self.track = None


class PublicationTrack(MediaStreamTrack):
    """One publication's frames from a subscriber m-line that may carry others before it."""

    def __init__(self, line: SubscriberLine, after_pts: int | None) -> None:
        super().__init__()
        self.kind = line.source.kind
        self._line = line
        self._after_pts = after_pts
        """Frames with a pts up to this one are the previous publication's (None: there was
        none)."""
        self._handed_over: list[av.frame.Frame | av.Packet] = []
        """Frames read by the previous track after it ended, that are this one's."""

    @property
    def frames_waiting(self) -> int:
        """Frames decoded and not read yet (some may be the previous publication's): a reader
        that wants what is shown now skips them."""
        queue = getattr(self._line.source, "_queue", None)  # aiortc's RemoteStreamTrack
        return len(self._handed_over) + (queue.qsize() if queue is not None else 0)

    def _is_mine(self, frame: av.frame.Frame | av.Packet) -> bool:
        if self._after_pts is None or frame.pts is None:
            return True
        return 0 < (frame.pts - self._after_pts) % RTP_TIMESTAMP_MODULO < 1 << 31

    async def recv(self) -> av.frame.Frame | av.Packet:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._handed_over:
                frame = self._handed_over.pop(0)
            else:
                frame = await self._line.source.recv()
                if self.readyState != "live":
                    # Ended while waiting: the frame belongs to whatever the m-line carries now.
                    if self._line.track is not None:
                        self._line.track._handed_over.append(frame)
                    raise MediaStreamError
            if self._is_mine(frame):
                self._after_pts = None  # in order from here on: no need to look again
                return frame


@dataclass
class ClientEvents:
    """Everything the server sent, in order, for assertions and waits."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


def _configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class ParloirClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        room: str,
        name: str | None = None,
        on_track: Callable[[ReceivedTrack], None] | None = None,
        on_chat: Callable[[str | bytes], None] | None = None,
        ssl: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.room = room
        self.name = name
        self.events = ClientEvents()
        self.joined: dict[str, Any] | None = None
        self.subscriber_pc = RTCPeerConnection(_configuration())
        self.publisher_pc: RTCPeerConnection | None = None
        self.received: dict[tuple[str, str], ReceivedTrack] = {}
        self._on_track = on_track
        self.on_chat = on_chat
        """Given each raw frame of the chat channel as it arrives, instead of recording it in
        `events` (a load tool keeps its own tally and skips the per-message bookkeeping)."""
        self._ssl = ssl
        self._lines: dict[str, SubscriberLine] = {}
        """Subscriber m-lines by mid."""
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0
        self.chat_channel: Any = None
        self.subscriber_pc.on("datachannel", self._datachannel)
        self._publication_transceivers: dict[str, list[RTCRtpTransceiver]] = {}
        """The publisher transceivers of each live own publication."""
        self._idle_transceivers: list[RTCRtpTransceiver] = []
        """Publisher transceivers of ended publications (inactive), reused by `publish`."""

    # ---- connection ----------------------------------------------------------------------

    async def connect(
        self, timeout: float = 10.0, purpose: str = "call", resume: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Join; `resume` ({participant_id, key} from an earlier `joined`) takes back the same
        participant after a drop."""
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(
            f"{self.base_url}/rtc", heartbeat=20, ssl=self._ssl if self._ssl is not None else True
        )
        self._reader = asyncio.ensure_future(self._read())
        request: dict[str, Any] = {
            "type": "join",
            "token": self.token,
            "room": self.room,
            "purpose": purpose,
        }
        if self.name:
            request["name"] = self.name
        if resume is not None:
            request["resume"] = resume
        self.joined = await self.request(request, expect="joined", timeout=timeout)
        return self.joined

    @property
    def resume_ticket(self) -> dict[str, str]:
        """What a new connection needs to take this participant back after a drop."""
        assert self.joined is not None
        participant = self.joined["participant"]
        return {"participant_id": participant["id"], "key": participant["resume_key"]}

    @property
    def participant_id(self) -> str:
        assert self.joined is not None
        return str(self.joined["participant"]["id"])

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, data: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(data)

    async def request(
        self, message: dict[str, Any], *, expect: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send with a fresh id; return the reply of type `expect` or raise ServerError."""
        self._next_id += 1
        request_id = f"r{self._next_id}"
        start = len(self.events.messages)
        await self.send({**message, "id": request_id})
        reply = await self.wait_for(
            lambda m: m.get("id") == request_id and m["type"] in (expect, "error"),
            timeout=timeout,
            start=start,
        )
        if reply["type"] == "error":
            raise ServerError(reply)
        return reply

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 10.0,
        start: int = 0,
    ) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            async with self.events.changed:
                index = start
                while True:
                    while index < len(self.events.messages):
                        message = self.events.messages[index]
                        index += 1
                        if predicate(message):
                            return message
                    await self.events.changed.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def wait_for_type(
        self, kind: str, timeout: float = 10.0, start: int = 0
    ) -> dict[str, Any]:
        return await self.wait_for(lambda m: m["type"] == kind, timeout=timeout, start=start)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if message["type"] == "offer" and message.get("pc") == "subscriber":
                    try:
                        await self._answer_subscriber_offer(message)
                    except Exception:
                        log.exception("client could not answer the subscriber offer")
                self._record(message)
        finally:
            self._record({"type": "socket-closed", "code": self._ws.close_code})

    def _record(self, message: dict[str, Any]) -> None:
        """Append what arrived (socket or chat channel) and wake the waiters."""
        self.events.messages.append(message)
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self.events.changed:
            self.events.changed.notify_all()

    # ---- subscribing ---------------------------------------------------------------------

    async def _answer_subscriber_offer(self, message: dict[str, Any]) -> None:
        carried = {entry["mid"]: entry for entry in message["subscriptions"]}
        await self.subscriber_pc.setRemoteDescription(
            RTCSessionDescription(sdp=message["sdp"], type="offer")
        )
        # Before the answer, so before any frame of what this offer announces can come. An
        # m-line the server reuses for another publication (PROTOCOL.md) brings no `track`
        # event in aiortc, and its receiver's track would go on from the previous publication.
        for transceiver in self.subscriber_pc.getTransceivers():
            if transceiver.receiver.track is None or transceiver.mid is None:
                continue
            line = self._lines.get(transceiver.mid)
            if line is None:
                line = self._lines[transceiver.mid] = SubscriberLine(transceiver.receiver)
            entry = carried.get(transceiver.mid)
            if entry is None:
                line.end()  # its publication ended: the m-line goes inactive
            elif line.carrying != (entry["publication_id"], entry["kind"]):
                track = line.carry((entry["publication_id"], entry["kind"]))
                self._report_track(entry, track, transceiver.receiver)
        answer = await self.subscriber_pc.createAnswer()
        await self.subscriber_pc.setLocalDescription(answer)
        await self.send(
            {"type": "answer", "pc": "subscriber", "sdp": self.subscriber_pc.localDescription.sdp}
        )

    def _report_track(
        self, entry: dict[str, Any], track: PublicationTrack, receiver: RTCRtpReceiver
    ) -> None:
        received = ReceivedTrack(
            entry["publication_id"], entry["participant_id"], entry["kind"], track, receiver
        )
        self.received[(received.publication_id, received.kind)] = received
        if self._on_track is not None:
            self._on_track(received)

    def _datachannel(self, channel: Any) -> None:
        if channel.label == "chat":
            self.chat_channel = channel
            channel.on("message", self._chat_frame)

    def _chat_frame(self, raw: str | bytes) -> None:
        if self.on_chat is not None:
            self.on_chat(raw)
        else:
            self._record(json.loads(raw))

    async def wait_for_chat_channel(self, timeout: float = 10.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.chat_channel is None or self.chat_channel.readyState != "open":
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("chat channel did not open")
            await asyncio.sleep(0.02)
        return self.chat_channel

    async def send_chat(
        self, text: str, *, to: str | None = None, topic: str = "chat", request_id: Any = None
    ) -> None:
        channel = await self.wait_for_chat_channel()
        message: dict[str, Any] = {"type": "chat", "text": text, "topic": topic}
        if to is not None:
            message["to"] = to
        if request_id is not None:
            message["id"] = request_id
        channel.send(json.dumps(message))

    def chat_messages(self) -> list[dict[str, Any]]:
        """Chat received so far: history first, then live messages, in order."""
        received: list[dict[str, Any]] = []
        for message in self.events.messages:
            if message["type"] == "chat-history":
                received.extend(message["messages"])
            elif message["type"] == "chat":
                received.append(message)
        return received

    async def wait_for_track(
        self, publication_id: str, kind: str, timeout: float = 10.0
    ) -> ReceivedTrack:
        deadline = asyncio.get_running_loop().time() + timeout
        while (publication_id, kind) not in self.received:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no {kind} track of {publication_id}")
            await asyncio.sleep(0.05)
        return self.received[(publication_id, kind)]

    # ---- publishing ----------------------------------------------------------------------

    async def publish(
        self,
        *,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        video_type: str = "camera",
        video_codec: str | None = None,
        timeout: float = 15.0,
        publication_id: str | None = None,
    ) -> dict[str, Any]:
        """Publish tracks; returns the live publication. `video_codec` limits what is offered."""
        if self.publisher_pc is None:
            self.publisher_pc = RTCPeerConnection(_configuration())
            self._idle_transceivers = []
        pc = self.publisher_pc
        transceivers = {}
        for kind, track in (("audio", audio), ("video", video)):
            if track is None:
                continue
            idle = next((t for t in self._idle_transceivers if t.kind == kind), None)
            if idle is not None:
                # The m-line of an ended publication carries this one (PROTOCOL.md `publish`):
                # the SDP does not grow with every publication ever made.
                self._idle_transceivers.remove(idle)
                idle.sender.replaceTrack(track)
                idle.direction = "sendonly"
                transceivers[kind] = idle
                continue
            transceiver = pc.addTransceiver(track, direction="sendonly")
            if kind == "video" and video_codec:
                wanted = f"video/{video_codec}".lower()
                caps = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [c for c in caps if c.mimeType.lower() in (wanted, "video/rtx")]
                )
            transceivers[kind] = transceiver
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        announce: dict[str, Any] = {"type": "publish", "video_type": video_type}
        if publication_id is not None:
            announce["publication_id"] = publication_id
        for kind, transceiver in transceivers.items():
            announce[f"{kind}_mid"] = transceiver.mid
        self._next_id += 1
        publish_id = f"p{self._next_id}"
        start = len(self.events.messages)
        await self.send({**announce, "id": publish_id})
        try:
            answer = await self.request(
                {"type": "offer", "pc": "publisher", "sdp": pc.localDescription.sdp},
                expect="answer",
                timeout=timeout,
            )
        except ServerError:
            # The server discarded or never accepted this peer connection: start afresh.
            await pc.close()
            self.publisher_pc = None
            raise
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        published = await self.wait_for(
            lambda m: m.get("id") == publish_id and m["type"] in ("published", "error"),
            timeout=timeout,
            start=start,
        )
        if published["type"] == "error":
            raise ServerError(published)
        self._publication_transceivers[published["publication"]["id"]] = list(transceivers.values())
        return dict(published["publication"])

    async def unpublish(self, publication_id: str) -> None:
        """Unpublish, then renegotiate with the publication's m-lines inactive; a later
        `publish` reuses them."""
        await self.request({"type": "unpublish", "publication_id": publication_id}, expect="ack")
        pc = self.publisher_pc
        ended = self._publication_transceivers.pop(publication_id, [])
        if pc is None or not ended:
            return
        for transceiver in ended:
            transceiver.sender.replaceTrack(None)
            transceiver.direction = "inactive"
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.request(
            {"type": "offer", "pc": "publisher", "sdp": pc.localDescription.sdp}, expect="answer"
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        self._idle_transceivers += ended

    # ---- leaving -------------------------------------------------------------------------

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            if self._ws is not None and not self._ws.closed:
                await self.send({"type": "leave"})
                await self.wait_for_type("socket-closed", timeout=5)
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.subscriber_pc.close()
        if self.publisher_pc is not None:
            await self.publisher_pc.close()
        if self._session is not None:
            await self._session.close()
