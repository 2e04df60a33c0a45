"""A participant's two peer connections with the SFU.

`PublisherPeer`: the client offers its own tracks, the SFU answers with only the room codec and
turns each received track into a published source. `SubscriberPeer`: the SFU offers the other
participants' tracks (sendonly) and the chat data channel; the client answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.sdp import SessionDescription, candidate_from_sdp

from media import aiortc_hooks
from media.codecs import choose_room_codec, offered_video_codecs, preferences
from media.ice import filter_sdp_candidates, keep_remote_candidate
from media.slot_track import SlotTrack
from media.sources import PublishedSource, make_source

log = logging.getLogger(__name__)


@dataclass
class PeerConnectionCount:
    """SFU-side peer connections opened and closed by this process (for leak checks, metrics)."""

    opened: int = 0
    closed: int = 0

    @property
    def open(self) -> int:
        return self.opened - self.closed


PEER_CONNECTIONS = PeerConnectionCount()


def _new_peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    aiortc_hooks.quiet_connect_task(asyncio.get_running_loop())
    PEER_CONNECTIONS.opened += 1
    return RTCPeerConnection(configuration)


async def _close_peer_connection(pc: RTCPeerConnection) -> None:
    # A close the SFU decides is not a connection loss: nobody is told about its state change.
    pc.remove_all_listeners("connectionstatechange")
    if not getattr(pc, "_parloir_closed", False):
        pc._parloir_closed = True  # type: ignore[attr-defined]
        PEER_CONNECTIONS.closed += 1
    await pc.close()


class PeerClosed(Exception):
    """The peer connection closed while a negotiation step ran on it (the client left, or its
    transport ended): an expected race, reported by the connection state, not a fault."""


class SdpError(Exception):
    """The remote SDP cannot be used; `reason` is safe to show to the client."""

    def __init__(
        self, reason: str, *, codec_unsupported: bool = False, peer_damaged: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.codec_unsupported = codec_unsupported
        self.peer_damaged = peer_damaged
        """aiortc failed half-way through applying it: the peer connection cannot be trusted
        (aiortc has no rollback) and must be replaced."""


def parse_sdp(sdp: str, loopback_only: bool) -> tuple[str, SessionDescription]:
    """Filter unreachable candidates and parse; raise SdpError on anything unusable."""
    sdp = filter_sdp_candidates(sdp.replace("\r\n", "\n").replace("\n", "\r\n"), loopback_only)
    if not sdp.startswith("v=0"):
        raise SdpError("SDP must start with v=0")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises assorted errors on garbage
        raise SdpError(f"SDP does not parse: {type(exc).__name__}: {exc}") from exc
    if not description.media:
        raise SdpError("SDP has no media section")
    for media in description.media:
        if media.kind in ("audio", "video") and not media.rtp.muxId:
            raise SdpError(f"{media.kind} section has no a=mid")
        if media.ice is None or not media.ice.usernameFragment or not media.dtls:
            raise SdpError("SDP lacks ICE credentials or a DTLS fingerprint")
    return sdp, description


RENEGOTIATION_WAIT_S = 10.0
SETTLE_POLL_S = 0.02


async def settle_before_renegotiation(
    pc: RTCPeerConnection, *, while_ice_checks: bool = True
) -> None:
    """Wait until the first negotiation's transport is up before starting another.

    aiortc starts a new sender/receiver only if DTLS is already connected when the new
    description is applied; one applied while DTLS is still connecting never starts (measured:
    the track arrives, no frame ever does).

    `while_ice_checks=False` waits out only the DTLS handshake (ICE completed, connection still
    connecting), for publisher offers the client sends back to back. From reading aiortc 1.16's
    `__connect`: while ICE still checks, the first negotiation's connect task is parked on the
    ICE start and, once DTLS is up, walks the live transceiver list, starting those the later
    description added; only a description applied during the handshake finds DTLS
    "connecting" and starts nothing. (Not isolated by measurement: aiortc as the *client* has
    its own race there, which dominates a loopback experiment; browsers do not.) So a
    publisher whose ICE never completes (a broken or hostile offer) is answered at once instead
    of after RENEGOTIATION_WAIT_S, which the fuzz judged a hang of its socket.

    The state is polled rather than listened to: the SFU closing the peer connection meanwhile
    removes its state listeners (`_close_peer_connection`), and must end the wait too.
    """
    if pc.remoteDescription is None:
        return

    def unsettled() -> bool:
        if pc.connectionState not in ("new", "connecting"):
            return False
        return while_ice_checks or pc.iceConnectionState == "completed"

    loop = asyncio.get_running_loop()
    deadline = loop.time() + RENEGOTIATION_WAIT_S
    while unsettled():
        if loop.time() >= deadline:
            log.info("renegotiating although the connection is still %s", pc.connectionState)
            return
        await asyncio.sleep(SETTLE_POLL_S)


ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def without_receive_side_estimation(answer_sdp: str) -> str:
    """Our publisher answer without abs-send-time and goog-remb.

    With them, aiortc's receive-side estimator tells Chromium it has 60-110 kbit/s even on
    loopback (measured: camera at 30-45 kbit/s, a 1080p screen at 1-2 fps). Without them
    Chromium falls back to loss-based control and ramps up (600-800 kbit/s within 9 s).
    """
    lines = answer_sdp.split("\r\n")
    kept = [
        line
        for line in lines
        if not (line.startswith("a=extmap:") and line.endswith(" " + ABS_SEND_TIME))
        and not (line.startswith("a=rtcp-fb:") and line.endswith(" goog-remb"))
    ]
    return "\r\n".join(kept)


@dataclass
class ReceivedTrack:
    mid: str
    kind: str
    source: PublishedSource


@dataclass
class OfferResult:
    answer_sdp: str
    video_codec: str | None
    """The room codec this offer was answered with (None if it carries no video)."""
    new_tracks: list[ReceivedTrack] = field(default_factory=list)


class PublisherPeer:
    """Receives one participant's tracks; the client is the offerer."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        *,
        forwarding: str,
        loopback_only: bool,
        on_state: Callable[[str], None],
    ) -> None:
        self.pc = _new_peer_connection(configuration)
        self._forwarding = forwarding
        self._loopback_only = loopback_only
        self._arrived: list[tuple[RTCRtpTransceiver, MediaStreamTrack]] = []
        self.sources: dict[str, PublishedSource] = {}
        """Published sources by the mid they arrive on."""
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", lambda: on_state(self.pc.connectionState))

    def _on_track(self, track: MediaStreamTrack) -> None:
        # Runs inside setRemoteDescription, before the receiver starts: the tap goes in now.
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                self._arrived.append((transceiver, track))
                return

    async def settle(self) -> None:
        """Before `handle_offer` of a renegotiation: wait (up to RENEGOTIATION_WAIT_S) while the
        first negotiation's DTLS handshake runs. Call it holding no lock others need."""
        await settle_before_renegotiation(self.pc, while_ice_checks=False)

    async def handle_offer(self, sdp: str, room_codec: str | None, preferred: str) -> OfferResult:
        sdp, description = parse_sdp(sdp, self._loopback_only)
        known_mids = {t.mid for t in self.pc.getTransceivers() if t.mid is not None}
        new_sections = [
            m
            for m in description.media
            if m.kind in ("audio", "video") and m.rtp.muxId not in known_mids
        ]
        video_codec = room_codec
        offered = set().union(
            *(
                offered_video_codecs([c.name for c in m.rtp.codecs])
                for m in new_sections
                if m.kind == "video"
            )
        )
        if any(m.kind == "video" for m in new_sections):
            if room_codec is None:
                video_codec = choose_room_codec(preferred, offered)
            if video_codec is None or video_codec not in offered:
                raise SdpError(
                    f"the offer has no {room_codec or 'H264/VP8'} video codec",
                    codec_unsupported=True,
                )
        # Transceivers created and given preferences *before* setRemoteDescription, so the
        # answer lists only the room codec (preferences set afterwards are ignored by aiortc).
        for media in new_sections:
            if media.direction not in ("sendonly", "sendrecv"):
                continue
            transceiver = self.pc.addTransceiver(media.kind, direction="recvonly")
            transceiver.setCodecPreferences(preferences(media.kind, video_codec or preferred))
        self._arrived = []
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise SdpError(f"offer could not be applied: {exc}", peer_damaged=True) from exc
        result = OfferResult(
            answer_sdp=without_receive_side_estimation(self.pc.localDescription.sdp),
            video_codec=video_codec,
        )
        # An m-line of an ended publication that sends again (the client reuses its transceiver
        # for a new publication): aiortc fires no `track` for it, its receiver goes on.
        sending = {
            m.rtp.muxId for m in description.media if m.direction in ("sendonly", "sendrecv")
        }
        arrived = {transceiver for transceiver, _ in self._arrived}
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            if (
                transceiver.mid in known_mids
                and transceiver.mid in sending
                and transceiver.mid not in self.sources
                and transceiver not in arrived
                and track is not None
            ):
                self._arrived.append((transceiver, track))
        for transceiver, track in self._arrived:
            mid = transceiver.mid or ""
            source = make_source(self._forwarding, transceiver.receiver, track)
            self.sources[mid] = source
            result.new_tracks.append(ReceivedTrack(mid=mid, kind=track.kind, source=source))
        self._arrived = []
        return result

    async def add_ice_candidate(
        self, candidate: str, sdp_mid: str | None, index: int | None
    ) -> None:
        await _add_candidate(self.pc, candidate, sdp_mid, index, self._loopback_only)

    async def stop_source(self, mid: str) -> None:
        source = self.sources.pop(mid, None)
        if source is not None:
            await source.stop()

    async def close(self) -> None:
        for mid in list(self.sources):
            await self.stop_source(mid)
        await _close_peer_connection(self.pc)


@dataclass
class Subscription:
    """One track of someone else's publication, sent to this participant."""

    publication_id: str
    participant_id: str
    kind: str
    track: MediaStreamTrack
    """This participant's copy of the published track."""
    transceiver: RTCRtpTransceiver
    slot: SlotTrack
    """What the m-line's sender reads: `track`, once the client knows the m-line carries it."""


class SubscriberPeer:
    """Sends the other participants' tracks and carries the chat channel; the SFU offers.

    An m-line whose publication ended goes inactive and, once the client has answered that,
    carries the next publication of its kind: a participant's SDP holds as many m-lines as the
    room ever had live tracks at once, not as many as it ever had (aiortc removes none).
    """

    def __init__(
        self,
        configuration: RTCConfiguration,
        *,
        loopback_only: bool,
        on_state: Callable[[str], None],
    ) -> None:
        self.pc = _new_peer_connection(configuration)
        self._loopback_only = loopback_only
        self.chat: RTCDataChannel | None = None
        """Created with the first offer, after that offer's transceivers: aiortc 1.16 with
        MAX_BUNDLE breaks when a data channel is created before the first transceivers of the
        same offer (it stops the shared transport)."""
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.on_chat_open: Callable[[], None] = lambda: None
        self.on_chat_message: Callable[[str | bytes], None] = lambda raw: None
        self._retired: list[Subscription] = []
        """Ended, their m-lines inactive in the next offer."""
        self._moved: list[Subscription] = []
        """On a recycled m-line, waiting for the client to accept the offer that says so."""
        self._offered: tuple[list[Subscription], list[Subscription]] = ([], [])
        """`_retired` and `_moved` as the offer awaiting an answer carries them."""
        self._recyclable: list[Subscription] = []
        """Retired, and the client has accepted that: the m-line may carry another track."""
        self.pc.on("connectionstatechange", lambda: on_state(self.pc.connectionState))

    def send_chat(self, text: str) -> bool:
        """Queue one frame on the chat channel; False if it is not open (yet, or any more).

        Never raises: it runs in the channel's callbacks, where an exception would end the
        DTLS transport (and with it every track this participant receives).
        """
        if self.chat is None or self.chat.readyState != "open":
            return False
        try:
            self.chat.send(text)
        except (InvalidStateError, ValueError) as exc:  # closing meanwhile; over the SCTP limit
            log.info("chat frame of %d bytes not sent: %r", len(text), exc)
            return False
        return True

    def subscribe(
        self,
        *,
        publication_id: str,
        participant_id: str,
        source: PublishedSource,
        video_codec: str,
    ) -> None:
        key = (publication_id, source.kind)
        if key in self.subscriptions:
            return
        track = source.subscribe()
        recycled = next((s for s in self._recyclable if s.kind == source.kind), None)
        if recycled is not None:
            self._recyclable.remove(recycled)
            transceiver, slot = recycled.transceiver, recycled.slot
            transceiver.direction = "sendonly"
        else:
            slot = SlotTrack(source.kind)
            slot.carry(track)  # a new m-line sends nothing before its negotiation anyway
            transceiver = self.pc.addTransceiver(slot, direction="sendonly")
            transceiver.setCodecPreferences(preferences(source.kind, video_codec))
        if source.forwards_encoded and source.kind == "video":
            # A subscriber's PLI/FIR must reach the publisher: nothing is encoded here.
            aiortc_hooks.route_keyframe_requests(transceiver.sender, source.request_keyframe)
        subscription = Subscription(
            publication_id, participant_id, source.kind, track, transceiver, slot
        )
        self.subscriptions[key] = subscription
        if recycled is not None:
            self._moved.append(subscription)

    def unsubscribe(self, publication_id: str) -> bool:
        """End this participant's copies of a publication; True if anything changed."""
        changed = False
        for key in [k for k in self.subscriptions if k[0] == publication_id]:
            subscription = self.subscriptions.pop(key)
            subscription.track.stop()
            subscription.slot.release()
            if subscription in self._moved:
                self._moved.remove(subscription)
            # aiortc cannot remove an m-line: it goes inactive, then carries a later track.
            subscription.transceiver.direction = "inactive"
            self._retired.append(subscription)
            changed = True
        return changed

    async def create_offer(self) -> tuple[str, list[dict[str, Any]]]:
        """The next subscriber offer and which mid carries what; PeerClosed if the peer
        connection closes meanwhile."""
        await settle_before_renegotiation(self.pc)
        try:
            if self.chat is None:
                self.chat = self.pc.createDataChannel("chat", ordered=True)
                self.chat.on("open", lambda: self.on_chat_open())
                self.chat.on("message", lambda raw: self.on_chat_message(raw))
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
        except InvalidStateError as exc:
            if self.pc.signalingState == "closed":
                raise PeerClosed(str(exc)) from exc
            raise
        self._offered = (list(self._retired), list(self._moved))
        mapping = [
            {
                "mid": s.transceiver.mid,
                "publication_id": s.publication_id,
                "participant_id": s.participant_id,
                "kind": s.kind,
            }
            for s in self.subscriptions.values()
        ]
        return self.pc.localDescription.sdp, mapping

    async def handle_answer(self, sdp: str) -> None:
        sdp, _ = parse_sdp(sdp, self._loopback_only)
        if self.pc.signalingState != "have-local-offer":
            raise SdpError("no subscriber offer is waiting for an answer")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:
            raise SdpError(f"answer could not be applied: {exc}", peer_damaged=True) from exc
        retired, moved = self._offered
        self._offered = ([], [])
        for subscription in retired:
            self._retired.remove(subscription)
            self._recyclable.append(subscription)
        for subscription in moved:
            if subscription in self._moved:
                self._moved.remove(subscription)
                subscription.slot.carry(subscription.track)

    async def add_ice_candidate(
        self, candidate: str, sdp_mid: str | None, index: int | None
    ) -> None:
        await _add_candidate(self.pc, candidate, sdp_mid, index, self._loopback_only)

    async def close(self) -> None:
        for subscription in [*self.subscriptions.values(), *self._retired, *self._recyclable]:
            subscription.track.stop()
            subscription.slot.stop()
        self.subscriptions.clear()
        self._retired.clear()
        self._moved.clear()
        self._recyclable.clear()
        await _close_peer_connection(self.pc)


async def _add_candidate(
    pc: RTCPeerConnection,
    candidate: str,
    sdp_mid: str | None,
    index: int | None,
    loopback_only: bool,
) -> None:
    if not candidate:
        return  # end-of-candidates: aiortc needs no signal
    value = candidate[len("candidate:") :] if candidate.startswith("candidate:") else candidate
    if not keep_remote_candidate(value, loopback_only):
        return
    try:
        parsed = candidate_from_sdp(value)
    except Exception as exc:
        raise SdpError(f"ICE candidate does not parse: {exc}") from exc
    if sdp_mid is None and index is None:
        raise SdpError("an ICE candidate needs sdp_mid or sdp_mline_index")
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = index
    if pc.remoteDescription is None:
        raise SdpError("ICE candidate before any remote description")
    try:
        await pc.addIceCandidate(parsed)
    except ValueError as exc:  # aioice refuses some candidates it parsed (after end-of-candidates)
        raise SdpError(f"ICE candidate refused: {exc}") from exc


async def close_quietly(*peers: PublisherPeer | SubscriberPeer | None) -> None:
    for peer in peers:
        if peer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.close(), timeout=5)
