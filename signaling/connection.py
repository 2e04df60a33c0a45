"""One signaling connection: validates each inbound message and applies it to the room.

Transport-free: the server hands in functions to send a message, close the socket and verify a
token, so this runs the same under aiohttp and in tests.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from media.peers import SdpError
from signaling.chat import TokenBucket
from signaling.errors import ErrorCode, SignalingError
from signaling.participant import Participant
from signaling.permissions import Grant
from signaling.protocol import (
    Answer,
    Blur,
    ClientMessage,
    IceCandidate,
    Join,
    Leave,
    Mute,
    Offer,
    Ping,
    Publish,
    Record,
    Unpublish,
    event_ack,
    event_answer,
    event_error,
    event_joined,
    event_left,
    event_published,
    parse_client_message,
)
from signaling.publication import Publication
from signaling.room import Room, RoomRegistry

log = logging.getLogger(__name__)

MESSAGES_PER_S = 50.0
"""Sustained signaling messages per second per socket (a call needs a handful)."""
MESSAGE_BURST = 100
CLOSE_UNAUTHORIZED = 4401
CLOSE_JOIN_TIMEOUT = 4408
CLOSE_LEFT = 1000
CLOSE_CONNECTION_LOST = 4410
CLOSE_FORCE_DISCONNECTED = 4403
KEEPALIVE_TIMEOUT_S = 4.0
"""A joined client that has sent `ping` keeps pinging: silent this long (and KEEPALIVE_CONFIRM_S
more), its socket is dead."""
KEEPALIVE_CONFIRM_S = 1.0
"""A second look before dropping: had this event loop itself stalled, the frames that arrived
meanwhile are read in that time (and push the deadline back), so nobody is dropped for it."""

SendJson = Callable[[dict[str, Any]], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
VerifyToken = Callable[[str], Grant]


class Connection:
    def __init__(
        self,
        registry: RoomRegistry,
        *,
        verify_token: VerifyToken,
        send_json: SendJson,
        close_socket: CloseSocket,
        max_message_bytes: int,
        ice_servers: list[str],
        ice_credentials: Callable[[str], dict[str, Any] | None] = lambda identity: None,
    ) -> None:
        self._registry = registry
        self._verify_token = verify_token
        self._send_json = send_json
        self._close_socket = close_socket
        self._max_message_bytes = max_message_bytes
        self._ice_servers = ice_servers
        self._ice_credentials = ice_credentials
        self.participant: Participant | None = None
        self.room: Room | None = None
        self._ended = False
        self._publish_requests: dict[str, Any] = {}
        self._rate = TokenBucket(MESSAGES_PER_S, MESSAGE_BURST)
        """publication id -> id of the `publish` request, echoed in `published`."""
        self._keepalive: asyncio.TimerHandle | None = None
        """Armed by the first `ping` after join; every frame received pushes it back."""

    async def send(self, message: dict[str, Any]) -> None:
        if self._ended:
            return
        try:
            await self._send_json(message)
        except (ConnectionError, RuntimeError):
            pass  # socket already gone; `closed()` will clean up

    async def handle_raw(self, raw: str | bytes) -> None:
        """Apply one inbound frame. Never raises: refusals become `error` messages."""
        request_id: Any = None
        if self._keepalive is not None:
            self._arm_keepalive()
        try:
            if not self._rate.take():
                raise SignalingError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {MESSAGES_PER_S:.0f} messages per second: message dropped",
                )
            message = parse_client_message(raw, self._max_message_bytes)
            request_id = message.id
            await self._dispatch(message)
        except SignalingError as error:
            self._registry.error_counts[error.code.value] += 1
            await self.send(event_error(error.for_request(request_id)))
            if error.code in (
                ErrorCode.TOKEN_INVALID,
                ErrorCode.TOKEN_EXPIRED,
                ErrorCode.WRONG_ROOM,
            ):
                log.warning("refused a join: %s (%s)", error.code.value, error.reason)
                await self._end(CLOSE_UNAUTHORIZED, error.code.value)
        except Exception:
            log.exception("signaling message failed")
            self._registry.error_counts[ErrorCode.INTERNAL.value] += 1
            await self.send(
                event_error(
                    SignalingError(ErrorCode.INTERNAL, "server error", request_id=request_id)
                )
            )

    async def _dispatch(self, message: ClientMessage) -> None:
        if isinstance(message, Join):
            await self._join(message)
            return
        if isinstance(message, Ping):
            if self.participant is not None and self._keepalive is None:
                self._arm_keepalive()
            await self.send(event_ack(message.id, "ping"))
            return
        participant, room = self.participant, self.room
        if participant is None or room is None:
            raise SignalingError(ErrorCode.NOT_JOINED, "send join first")
        if isinstance(message, Publish):
            await self._publish(room, participant, message)
        elif isinstance(message, Offer):
            await self._publisher_offer(room, participant, message)
        elif isinstance(message, Answer):
            await self._subscriber_answer(participant, message)
        elif isinstance(message, IceCandidate):
            await self._ice(participant, message)
        elif isinstance(message, Unpublish):
            async with self._registry.lock(room.id):
                await room.unpublish(participant, message.publication_id, message.reason)
            await self._ack(message.id, "unpublish")
        elif isinstance(message, Mute):
            await room.set_muted(participant, message.publication_id, message.kind, message.muted)
            await self._ack(message.id, "mute")
        elif isinstance(message, Blur):
            status = await room.set_blur(
                participant, message.publication_id, message.enabled, message.strength
            )
            await self.send({"type": "ack", "id": message.id, "of": "blur", "blur": status})
        elif isinstance(message, Record):
            await self._record(participant, room, message)
        elif isinstance(message, Leave):
            # A goodbye spends the token: it cannot bring anyone back in (replay after leave).
            if not room.loopback:
                self._registry.spend(participant.grant.token_id, participant.grant.expires_at)
            await self.send(event_left("clientDisconnected"))
            await self._leave("clientDisconnected")
            await self._end(CLOSE_LEFT, "left")

    async def _ack(self, request_id: Any, of: str) -> None:
        if request_id is not None:
            await self.send(event_ack(request_id, of))

    async def _join(self, message: Join) -> None:
        if self.participant is not None:
            raise SignalingError(ErrorCode.ALREADY_JOINED, "this socket has already joined")
        grant = self._verify_token(message.token)
        if grant.room != message.room:
            raise SignalingError(ErrorCode.WRONG_ROOM, "the token is for another room")
        if message.resume is not None:
            await self._take_over(message, grant)
            await self._resume(message, grant)
            return
        test = message.purpose == "connection-test"
        if not test:
            self._registry.check_admission(grant.room, grant.token_id)
        room_id = self._registry.create_loopback().id if test else grant.room
        async with self._registry.lock(room_id):
            room = self._registry.get_or_create(room_id)
            participant = Participant(
                grant=grant,
                name=message.name or grant.name,
                send=self.send,
                media=room.media,
                on_connection_lost=self._connection_lost,
            )
            participant.kick = self._kicked
            participant.drop = self._dropped
            await room.admit(participant)
            self.participant, self.room = participant, room
            await self._send_joined(message, room, participant)
            room.start_subscriptions(participant)
        log.info(
            "participant %s (%s) joined room %s as %s",
            participant.id,
            grant.identity,
            room.id,
            grant.role.value,
        )

    async def _take_over(self, message: Join, grant: Grant) -> None:
        """A resume for a participant whose old socket still looks open: the client saw that
        connection die before this server did (a stalled socket is not closed for a while), so
        it is dropped now, as if its socket had closed, and the resume goes ahead."""
        assert message.resume is not None
        room = self._registry.rooms.get(grant.room)
        participant = room.participants.get(message.resume.participant_id) if room else None
        if (
            participant is None
            or participant.reconnecting
            or participant.drop is None
            or participant.identity != grant.identity
            or not hmac.compare_digest(participant.resume_key, message.resume.key)
        ):
            return  # nothing live to take over; `_resume` decides
        log.info("participant %s resumes over its stalled connection", participant.id)
        await participant.drop()

    async def _resume(self, message: Join, grant: Grant) -> None:
        assert message.resume is not None
        room = self._registry.rooms.get(grant.room)
        async with self._registry.lock(grant.room):
            participant = room.participants.get(message.resume.participant_id) if room else None
            if (
                room is None
                or participant is None
                or not participant.reconnecting
                or participant.identity != grant.identity
                or not hmac.compare_digest(participant.resume_key, message.resume.key)
            ):
                raise SignalingError(
                    ErrorCode.RESUME_FAILED, "nothing to resume: join as a new participant"
                )
            await room.resume(participant, self.send, self._connection_lost)
            participant.kick = self._kicked
            participant.drop = self._dropped
            self.participant, self.room = participant, room
            await self._send_joined(
                message,
                room,
                participant,
                resumed=True,
                suspended_publications=[p.describe() for p in participant.suspended.values()],
            )
            room.start_subscriptions(participant)
        log.info("participant %s resumed in room %s", participant.id, room.id)

    async def _send_joined(
        self, message: Join, room: Room, participant: Participant, **extra: Any
    ) -> None:
        """The one `joined` reply, for new and resumed participants."""
        others = [p.describe() for p in room.participants.values() if p is not participant]
        joined = event_joined(
            request_id=message.id,
            participant={**participant.describe(), "resume_key": participant.resume_key},
            room=room.describe(),
            participants=others,
            publications=[p.describe() for p in room.live_publications()],
            ice_servers=self._ice_servers,
            blur_available=self._registry.blur_available,
        )
        credentials = self._ice_credentials(participant.identity)
        if credentials is not None:
            joined["ice_credentials"] = credentials
        await self.send({**joined, **extra})

    async def _publish(self, room: Room, participant: Participant, message: Publish) -> None:
        mids = {k: v for k, v in (("audio", message.audio_mid), ("video", message.video_mid)) if v}
        if len(set(mids.values())) != len(mids):
            raise SignalingError(ErrorCode.INVALID_MESSAGE, "audio_mid and video_mid must differ")
        if message.publication_id is not None:
            resumed = participant.suspended.pop(message.publication_id, None)
            if resumed is None:
                raise SignalingError(
                    ErrorCode.UNKNOWN_PUBLICATION, "no suspended publication with that id"
                )
            resumed.mids = mids
            resumed.sources = {}
            resumed.video_type = message.video_type
            room.announce(participant, resumed)
            self._publish_requests[resumed.id] = message.id
            return
        publication = Publication(
            participant_id=participant.id,
            video_type=message.video_type,
            name=message.name or participant.name,
            mids=mids,
            muted={"audio": message.audio_muted, "video": message.video_muted},
            layout_classes=list(participant.grant.layout_classes),
        )
        room.announce(participant, publication)
        self._publish_requests[publication.id] = message.id

    async def _record(self, participant: Participant, room: Room, message: Record) -> None:
        if not participant.role.can_moderate:
            raise SignalingError(
                ErrorCode.FORBIDDEN, "only a moderator can start or stop recording"
            )
        control = self._registry.recording_control
        if control is None:
            raise SignalingError(ErrorCode.FORBIDDEN, "recording is not available on this server")
        if message.action == "start":
            recording = await control.start_recording(
                room.id, message.output_mode, message.resolution, message.name
            )
        else:
            recording = await control.stop_recording(room.id)
        await self.send({"type": "ack", "id": message.id, "of": "record", "recording": recording})

    async def _publisher_offer(self, room: Room, participant: Participant, message: Offer) -> None:
        # A renegotiation may first wait for the previous one's DTLS handshake: never while
        # holding the room lock, which every join, publish and leave in the room needs.
        await participant.settle_publisher()
        async with self._registry.lock(room.id):
            if (
                self.participant is not participant
                or room.participants.get(participant.id) is not participant
                or participant.closed
            ):
                raise SignalingError(
                    ErrorCode.NOT_JOINED, "the connection ended while the offer waited"
                )
            answer, went_live = await room.apply_publisher_offer(participant, message.sdp)
            await self.send(event_answer(message.id, answer))
            for publication in went_live:
                request_id = self._publish_requests.pop(publication.id, None)
                await self.send(event_published(request_id, publication.describe()))
                await room.announce_live(participant, publication)

    async def _subscriber_answer(self, participant: Participant, message: Answer) -> None:
        try:
            await participant.accept_subscriber_answer(message.sdp)
        except SdpError as exc:
            raise SignalingError(ErrorCode.BAD_SDP, exc.reason) from exc
        await self._ack(message.id, "answer")

    async def _ice(self, participant: Participant, message: IceCandidate) -> None:
        peer = participant.publisher if message.pc == "publisher" else participant.subscriber
        if peer is None:
            raise SignalingError(ErrorCode.INVALID_MESSAGE, f"no {message.pc} peer connection yet")
        try:
            await peer.add_ice_candidate(
                message.candidate, message.sdp_mid, message.sdp_mline_index
            )
        except SdpError as exc:
            raise SignalingError(ErrorCode.BAD_SDP, exc.reason) from exc
        await self._ack(message.id, "ice")

    def _connection_lost(self, participant: Participant, what: str) -> None:
        if participant is self.participant and not self._ended:
            if what == "failed" and self.room is not None:
                self.room.observer.connection_failed(self.room, participant, what)
            asyncio.ensure_future(self._lost())

    async def _kicked(self, reason: str) -> None:
        """A moderator or the platform ends this connection."""
        await self.send(event_left(reason))
        await self._leave(reason)
        await self._end(CLOSE_FORCE_DISCONNECTED, reason)

    async def _lost(self) -> None:
        await self._suspend()
        await self._end(CLOSE_CONNECTION_LOST, "media connection lost")

    async def _dropped(self) -> None:
        """Another socket resumed this participant: this one is dead, close it (not waiting
        for a closing handshake the stalled client cannot answer)."""
        await self._suspend()
        asyncio.ensure_future(self._end(CLOSE_CONNECTION_LOST, "resumed on another connection"))

    def _arm_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._keepalive = asyncio.get_running_loop().call_later(
            KEEPALIVE_TIMEOUT_S, self._keepalive_expired
        )

    def _keepalive_expired(self) -> None:
        if self.participant is not None and not self._ended:
            self._keepalive = asyncio.get_running_loop().call_later(
                KEEPALIVE_CONFIRM_S, self._silent
            )

    def _silent(self) -> None:
        if self.participant is not None and not self._ended:
            log.info("participant %s went silent: connection dropped", self.participant.id)
            asyncio.ensure_future(self._lost())

    async def _suspend(self) -> None:
        """The connection broke (not a goodbye): the participant may come back with `resume`."""
        participant, room = self.participant, self.room
        self.participant = None
        if participant is None or room is None:
            return
        if room.loopback or self._registry.reconnect_grace_s <= 0:
            self.participant = participant
            await self._leave("networkDisconnected")
            return
        async with self._registry.lock(room.id):
            await room.suspend(participant)
        self._registry.expire_later(room, participant)
        log.info("participant %s of room %s is reconnecting", participant.id, room.id)

    async def _leave(self, reason: str) -> None:
        participant, room = self.participant, self.room
        self.participant = None
        if participant is None or room is None:
            return
        async with self._registry.lock(room.id):
            await room.remove(participant, reason)
            self._registry.drop_if_empty(room)
        log.info("participant %s left room %s: %s", participant.id, room.id, reason)

    async def _end(self, code: int, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            await self._close_socket(code, reason)
        except Exception:
            log.debug("closing socket failed", exc_info=True)

    async def closed(self) -> None:
        """The socket is gone (client closed it or the network dropped)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        await self._suspend()
        self._ended = True

    @property
    def joined(self) -> bool:
        return self.participant is not None
