"""A room's membership and the fan-out of publications to its participants."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from media.blur import BlurredSource, BlurStatus, BlurStrength
from media.blur_segmentation import BlurUnavailable, blur_installed
from media.config import MediaSettings
from media.peers import SdpError, close_quietly
from media.sources import PublishedSource
from signaling.chat import ChatLog
from signaling.errors import ErrorCode, SignalingError
from signaling.participant import Participant, Send
from signaling.protocol import (
    chat_history_frames,
    describe_blur,
    event_blur_status,
    event_chat_error,
    event_mute_changed,
    event_participant_joined,
    event_participant_left,
    event_participant_reconnected,
    event_participant_reconnecting,
    event_track_published,
    event_track_unpublished,
    parse_chat_message,
)
from signaling.publication import Publication

log = logging.getLogger(__name__)


class RoomObserver(Protocol):
    """What the server records about rooms (attendance, telemetry). Must not raise."""

    def participant_joined(self, room: Room, participant: Participant) -> None: ...

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None: ...

    def publication_changed(
        self, room: Room, publication: Publication, live: bool, reason: str
    ) -> None: ...

    def connection_failed(self, room: Room, participant: Participant, state: str) -> None: ...

    def room_closed(self, room: Room) -> None: ...

    def participant_suspended(self, room: Room, participant: Participant) -> None: ...

    def participant_resumed(self, room: Room, participant: Participant) -> None: ...


class RecordingControl(Protocol):
    """Starts and stops recordings for moderators (implemented by the server)."""

    async def start_recording(
        self, room_id: str, output_mode: str, resolution: str, name: str | None
    ) -> dict[str, Any]: ...

    async def stop_recording(self, room_id: str) -> dict[str, Any]: ...


class NullObserver:
    """A RoomObserver that ignores every event: a room's default, and the base of an observer
    that cares about some events only."""

    def participant_joined(self, room: Room, participant: Participant) -> None:
        return None

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        return None

    def publication_changed(
        self, room: Room, publication: Publication, live: bool, reason: str
    ) -> None:
        return None

    def connection_failed(self, room: Room, participant: Participant, state: str) -> None:
        return None

    def room_closed(self, room: Room) -> None:
        return None

    def participant_suspended(self, room: Room, participant: Participant) -> None:
        return None

    def participant_resumed(self, room: Room, participant: Participant) -> None:
        return None


@dataclass
class Room:
    id: str
    media: MediaSettings
    observer: RoomObserver
    codec: str | None = None
    """Video codec fixed at the first publish (`h264` or `vp8`)."""
    participants: dict[str, Participant] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    chat: ChatLog = field(default_factory=ChatLog)
    """In memory only: gone when the room closes."""
    mute_all_active: bool = False
    """A moderator or the platform muted everyone; new publications start muted too."""
    mute_all_excluded: set[str] = field(default_factory=set)
    recording_id: str | None = None
    """The recording in progress, shown to participants as an indicator."""
    loopback: bool = False
    """A connection-test room: participants also receive their own publications."""
    error_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    """Shared with the registry: errors sent to clients, by code."""

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "codec": self.codec.upper() if self.codec else None,
            "recording": self.recording_id,
            "loopback": self.loopback,
        }

    def live_publications(self) -> list[Publication]:
        return [
            pub
            for participant in self.participants.values()
            for pub in participant.publications.values()
            if pub.live
        ]

    async def broadcast(self, message: dict[str, Any], *, exclude: str | None = None) -> None:
        targets = [p for p in self.participants.values() if p.id != exclude]
        await asyncio.gather(*(p.send(message) for p in targets), return_exceptions=True)

    # ---- membership ----------------------------------------------------------------------

    async def admit(self, participant: Participant) -> None:
        """Add a participant: tell the others, then offer it everything already published."""
        self.participants[participant.id] = participant
        self._open_subscriber(participant)
        self.observer.participant_joined(self, participant)
        await self.broadcast(
            event_participant_joined(participant.describe()), exclude=participant.id
        )

    def _open_subscriber(self, participant: Participant) -> None:
        peer = participant.open_subscriber()
        peer.on_chat_open = lambda: self._send_chat_history(participant)
        peer.on_chat_message = lambda raw: self._relay_chat(participant, raw)

    async def suspend(self, participant: Participant) -> None:
        """Its connection dropped: keep its place and ids, end its media, tell the others it is
        reconnecting (not gone)."""
        if self.participants.get(participant.id) is not participant or participant.reconnecting:
            return
        participant.reconnecting = True
        participant.drops += 1
        for publication in list(participant.publications.values()):
            await self._retire(participant, publication, "reconnecting", announce=False)
            participant.suspended[publication.id] = publication
        participant.pending.clear()
        await participant.close()
        self.observer.participant_suspended(self, participant)
        await self.broadcast(event_participant_reconnecting(participant.id), exclude=participant.id)

    async def resume(
        self,
        participant: Participant,
        send: Send,
        on_connection_lost: Callable[[Participant, str], None],
    ) -> None:
        participant.reopen(send, on_connection_lost)
        self._open_subscriber(participant)
        self.observer.participant_resumed(self, participant)
        await self.broadcast(event_participant_reconnected(participant.id), exclude=participant.id)

    def start_subscriptions(self, participant: Participant) -> None:
        if participant.role.can_subscribe:
            for publication in self.live_publications():
                if publication.participant_id != participant.id:
                    self._subscribe(participant, publication)
        participant.request_subscriber_offer()

    # ---- chat ----------------------------------------------------------------------------

    def _send_chat_history(self, participant: Participant) -> None:
        """Runs in the channel's open callback: sends the history in frames the channel takes."""
        history = self.chat.history_for(participant.id, participant.identity)
        if participant.subscriber is not None:
            for frame in chat_history_frames([m.describe() for m in history]):
                if not participant.subscriber.send_chat(frame):
                    return

    def _relay_chat(self, sender: Participant, raw: str | bytes) -> None:
        """Runs synchronously in the data channel callback, so relays keep arrival order. Never
        raises: an exception there would end the sender's DTLS transport."""
        try:
            self._relay_chat_frame(sender, raw)
        except Exception:
            log.exception("chat frame from participant %s failed", sender.id)

    def _relay_chat_frame(self, sender: Participant, raw: str | bytes) -> None:
        try:
            try:
                request = parse_chat_message(raw)
            except SignalingError as refused:
                # Refused frames count against the rate too, each echoing its id if it has one.
                self.chat.admit(sender.id, request_id=refused.request_id)
                raise
            self.chat.admit(sender.id, request_id=request.id)
            recipient = None
            if request.to is not None:
                recipient = self.participants.get(request.to)
                if recipient is None:
                    raise SignalingError(
                        ErrorCode.UNKNOWN_PARTICIPANT,
                        f"no participant {request.to!r} here",
                        request_id=request.id,
                    )
        except SignalingError as error:
            self.error_counts[error.code.value] += 1
            if sender.subscriber is not None:
                sender.subscriber.send_chat(json.dumps(event_chat_error(error)))
            return
        self.post_chat(
            sender=sender,
            text=request.text,
            topic=request.topic,
            recipient=recipient,
            request_id=request.id,
        )

    def post_chat(
        self,
        *,
        sender: Participant | None,
        text: str,
        topic: str,
        recipient: Participant | None = None,
        request_id: Any = None,
    ) -> None:
        """Append to the room's chat and deliver; `sender` None is the platform (a signal)."""
        message = self.chat.append(
            sender_id=sender.id if sender else None,
            sender_identity=sender.identity if sender else None,
            sender_name=sender.name if sender else "Platform",
            text=text,
            topic=topic,
            to_id=recipient.id if recipient else None,
            to_identity=recipient.identity if recipient else None,
        )
        payload = json.dumps({**message.describe(), "request_id": request_id})
        targets = [sender, recipient] if recipient else list(self.participants.values())
        for target in targets:
            if target is not None and target.subscriber is not None:
                # Not open yet: the history sent when it opens carries this message.
                target.subscriber.send_chat(payload)

    async def remove(self, participant: Participant, reason: str) -> None:
        if self.participants.pop(participant.id, None) is None:
            return
        for publication in list(participant.publications.values()):
            await self._retire(participant, publication, "participantLeft")
        for publication in participant.suspended.values():
            # Its media already ended at the drop; now the others learn it is gone for good.
            await self.broadcast(
                event_track_unpublished(publication.id, participant.id, "participantLeft"),
                exclude=participant.id,
            )
        participant.suspended.clear()
        participant.pending.clear()
        await participant.close()
        self.chat.forget_sender(participant.id)
        self.observer.participant_left(self, participant, reason)
        await self.broadcast(event_participant_left(participant.id, reason))
        if not self.participants:
            self.codec = None

    # ---- publications --------------------------------------------------------------------

    def announce(self, participant: Participant, publication: Publication) -> None:
        if not (participant.role.can_publish or self.loopback):
            raise SignalingError(ErrorCode.FORBIDDEN, f"role {participant.role} cannot publish")
        if not publication.mids:
            raise SignalingError(ErrorCode.INVALID_MESSAGE, "publish needs audio_mid or video_mid")
        taken = {
            mid
            for pub in list(participant.publications.values()) + participant.pending
            for mid in pub.mids.values()
        }
        if taken & set(publication.mids.values()):
            raise SignalingError(ErrorCode.INVALID_MESSAGE, "a mid is already published")
        participant.pending.append(publication)

    async def apply_publisher_offer(
        self, participant: Participant, sdp: str
    ) -> tuple[str, list[Publication]]:
        """Answer a publisher offer; return the answer and the publications it made live."""
        if not (participant.role.can_publish or self.loopback):
            raise SignalingError(ErrorCode.FORBIDDEN, f"role {participant.role} cannot publish")
        peer = participant.open_publisher()
        try:
            result = await peer.handle_offer(sdp, self.codec, self.media.preferred_video_codec)
        except SdpError as exc:
            participant.pending.clear()
            code = ErrorCode.CODEC_UNSUPPORTED if exc.codec_unsupported else ErrorCode.BAD_SDP
            if exc.peer_damaged:
                await self._discard_publisher(participant)
                code = ErrorCode.NEGOTIATION_FAILED if participant.publications else code
            raise SignalingError(code, exc.reason) from exc
        if result.video_codec is not None and self.codec is None:
            self.codec = result.video_codec
        went_live: list[Publication] = []
        for track in result.new_tracks:
            owner = next((p for p in participant.pending if p.kind_of_mid(track.mid)), None)
            if owner is None:
                # A track nobody announced: never forwarded.
                log.info("participant %s sent unannounced mid %s", participant.id, track.mid)
                await peer.stop_source(track.mid)
                continue
            owner.sources[track.kind] = self._camera_source(participant, owner, track.source)
        for publication in list(participant.pending):
            if publication.live:
                participant.pending.remove(publication)
                participant.publications[publication.id] = publication
                went_live.append(publication)
        return result.answer_sdp, went_live

    async def _discard_publisher(self, participant: Participant) -> None:
        """Replace a publisher peer connection aiortc left half-configured: its publications
        end (the client publishes again on a fresh one)."""
        for publication in list(participant.publications.values()):
            await self._retire(participant, publication, "negotiationFailed")
        if participant.publisher is not None:
            await close_quietly(participant.publisher)
            participant.publisher = None

    def _camera_source(
        self, participant: Participant, publication: Publication, source: PublishedSource
    ) -> PublishedSource:
        """Every camera video is wrapped for blur from the start (frames pass through untouched
        while it is off), so switching never renegotiates and raw video can be cut off at once."""
        if publication.video_type != "camera" or source.kind != "video":
            return source
        if not source.forwards_encoded:
            return source  # the relay baseline has no encoded frames to blur

        def tell_owner(status: BlurStatus) -> None:
            asyncio.ensure_future(participant.send(event_blur_status(publication.id, status)))

        return BlurredSource(source, on_status=tell_owner)  # type: ignore[arg-type]

    async def set_blur(
        self, actor: Participant, publication_id: str, enabled: bool, strength: str
    ) -> dict[str, Any]:
        owner, publication = self.find_publication(publication_id)
        if owner.id != actor.id:
            raise SignalingError(ErrorCode.FORBIDDEN, "only its publisher can blur a camera")
        source = publication.sources.get("video")
        if not isinstance(source, BlurredSource):
            raise SignalingError(
                ErrorCode.INVALID_MESSAGE, "background blur applies to camera video only"
            )
        try:
            status = await source.set_blur(enabled, BlurStrength(strength))
        except BlurUnavailable as exc:
            raise SignalingError(ErrorCode.BLUR_UNAVAILABLE, exc.reason) from exc
        return describe_blur(status)

    async def announce_live(self, participant: Participant, publication: Publication) -> None:
        if self.mute_all_active and publication.id not in self.mute_all_excluded:
            self._force_mute(publication)
        self.observer.publication_changed(self, publication, True, "published")
        for other in self.participants.values():
            if other.reconnecting:
                continue  # subscribed afresh when it is back
            if (other.id != participant.id or self.loopback) and other.role.can_subscribe:
                self._subscribe(other, publication)
                other.request_subscriber_offer()
        await self.broadcast(event_track_published(publication.describe()), exclude=participant.id)

    def _subscribe(self, subscriber: Participant, publication: Publication) -> None:
        assert subscriber.subscriber is not None
        for source in publication.sources.values():
            subscriber.subscriber.subscribe(
                publication_id=publication.id,
                participant_id=publication.participant_id,
                source=source,
                video_codec=self.codec or self.media.preferred_video_codec,
            )

    def find_publication(self, publication_id: str) -> tuple[Participant, Publication]:
        for participant in self.participants.values():
            publication = participant.publications.get(publication_id)
            if publication is not None:
                return participant, publication
        raise SignalingError(
            ErrorCode.UNKNOWN_PUBLICATION, f"no publication {publication_id!r} here"
        )

    async def unpublish(self, actor: Participant, publication_id: str, reason: str) -> None:
        owner, publication = self.find_publication(publication_id)
        if owner.id != actor.id and not actor.role.can_moderate:
            raise SignalingError(
                ErrorCode.FORBIDDEN, "only its publisher or a moderator can unpublish"
            )
        await self._retire(owner, publication, reason)

    async def _retire(
        self, owner: Participant, publication: Publication, reason: str, *, announce: bool = True
    ) -> None:
        owner.publications.pop(publication.id, None)
        for source in publication.sources.values():
            if isinstance(source, BlurredSource):
                await source.stop()  # its worker thread ends with it
        if owner.publisher is not None:
            for mid in publication.mids.values():
                await owner.publisher.stop_source(mid)
        for other in self.participants.values():
            if other.subscriber is not None and other.subscriber.unsubscribe(publication.id):
                other.request_subscriber_offer()
        self.observer.publication_changed(self, publication, False, reason)
        if not announce:
            return
        await self.broadcast(
            event_track_unpublished(publication.id, owner.id, reason), exclude=owner.id
        )

    # ---- moderation (moderators and the platform's REST API) -------------------------------

    def _force_mute(self, publication: Publication) -> bool:
        """Mute a publication's audio on the server: frames stop being forwarded whatever the
        publisher's client does."""
        source = publication.sources.get("audio")
        if source is None:
            return False
        source.paused = True
        publication.muted["audio"] = True
        publication.force_muted = True
        return True

    async def force_mute(self, publication_id: str) -> None:
        owner, publication = self.find_publication(publication_id)
        if self._force_mute(publication):
            await self.broadcast(
                {**event_mute_changed(publication.id, owner.id, "audio", True), "forced": True}
            )

    async def mute_all(self, active: bool, excluded: set[str]) -> None:
        self.mute_all_active = active
        self.mute_all_excluded = set(excluded) if active else set()
        if not active:
            return
        for publication in self.live_publications():
            if publication.id not in excluded and not publication.force_muted:
                await self.force_mute(publication.id)

    def set_layout_classes(self, publication_id: str, classes: list[str]) -> Publication:
        _, publication = self.find_publication(publication_id)
        publication.layout_classes = list(classes)
        return publication

    async def set_muted(
        self, actor: Participant, publication_id: str, kind: str, muted: bool
    ) -> None:
        owner, publication = self.find_publication(publication_id)
        if owner.id != actor.id and not actor.role.can_moderate:
            raise SignalingError(ErrorCode.FORBIDDEN, "only its publisher or a moderator can mute")
        if kind not in publication.mids:
            raise SignalingError(ErrorCode.INVALID_MESSAGE, f"publication has no {kind} track")
        if not muted and kind == "audio" and publication.force_muted:
            # The publisher unmutes after a force mute: allowed unless mute-all still holds.
            if self.mute_all_active and publication.id not in self.mute_all_excluded:
                raise SignalingError(ErrorCode.FORBIDDEN, "a moderator muted everyone")
            publication.force_muted = False
            publication.sources["audio"].paused = False
        publication.muted[kind] = muted
        await self.broadcast(event_mute_changed(publication.id, owner.id, kind, muted))


@dataclass
class RoomRegistry:
    """The live rooms of this process: created on first join, closed once empty for the grace
    period (a participant rejoining within it finds the room, and its chat, as it was)."""

    media: MediaSettings
    observer: RoomObserver = field(default_factory=NullObserver)
    grace_s: float = 30.0
    reconnect_grace_s: float = 30.0
    """How long a dropped participant keeps its place, ids and publications' ids."""
    max_participants_per_room: int = 50
    max_rooms: int = 500
    chat_rate_per_s: float = 20.0
    chat_burst: int = 20
    spent_tokens: dict[str, float] = field(default_factory=dict)
    """Token id -> its expiry: tokens of participants who left; they do not admit again."""
    recording_control: RecordingControl | None = None
    blur_available: bool = field(default_factory=blur_installed)
    """The blur model ships with the installed mediapipe (loaded on first use)."""
    rooms: dict[str, Room] = field(default_factory=dict)
    error_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    """Errors sent to clients, by code (metrics; includes every limit breach)."""
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _closing: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    def create_loopback(self) -> Room:
        """A private connection-test room; nothing in it is observed (no telemetry, no
        recording): only the test's result, which the browser posts, is kept."""
        room_id = f"connection-test-{uuid.uuid4().hex}"
        room = Room(id=room_id, media=self.media, observer=NullObserver(), loopback=True)
        self.rooms[room_id] = room
        return room

    def check_admission(self, room_id: str, token_id: str) -> None:
        """Refuse a join that would exceed a limit or replay a spent token."""
        now = time.time()
        for spent, expiry in list(self.spent_tokens.items()):
            if expiry < now:
                del self.spent_tokens[spent]
        if token_id and token_id in self.spent_tokens:
            raise SignalingError(ErrorCode.TOKEN_SPENT, "this token was used by someone who left")
        room = self.rooms.get(room_id)
        if room is None and len(self.rooms) >= self.max_rooms:
            raise SignalingError(ErrorCode.SERVER_FULL, f"this server holds {self.max_rooms} rooms")
        if room is not None and len(room.participants) >= self.max_participants_per_room:
            raise SignalingError(
                ErrorCode.ROOM_FULL, f"the room holds {self.max_participants_per_room} participants"
            )

    def spend(self, token_id: str, expires_at: float) -> None:
        if token_id:
            self.spent_tokens[token_id] = expires_at

    def get_or_create(self, room_id: str) -> Room:
        pending_close = self._closing.pop(room_id, None)
        if pending_close is not None:
            pending_close.cancel()
        room = self.rooms.get(room_id)
        if room is None:
            room = Room(
                id=room_id,
                media=self.media,
                observer=self.observer,
                error_counts=self.error_counts,
                chat=ChatLog(rate_per_s=self.chat_rate_per_s, burst=self.chat_burst),
            )
            self.rooms[room_id] = room
        return room

    def lock(self, room_id: str) -> asyncio.Lock:
        """Serialises membership and publication changes of one room."""
        return self._locks.setdefault(room_id, asyncio.Lock())

    def expire_later(self, room: Room, participant: Participant) -> None:
        """Remove a reconnecting participant once the grace period of this drop passes without
        it (back and dropped again meanwhile: the later drop's own grace period counts)."""
        drop = participant.drops

        async def expire() -> None:
            async with self.lock(room.id):
                if (
                    room.participants.get(participant.id) is participant
                    and participant.reconnecting
                    and participant.drops == drop
                ):
                    await room.remove(participant, "networkDisconnected")
                    self.drop_if_empty(room)

        asyncio.get_running_loop().call_later(
            self.reconnect_grace_s, lambda: asyncio.ensure_future(expire())
        )

    def drop_if_empty(self, room: Room) -> None:
        """Schedule the room's close if nobody is left in it."""
        if room.participants or self.rooms.get(room.id) is not room or room.id in self._closing:
            return
        self._closing[room.id] = asyncio.get_running_loop().call_later(
            self.grace_s, self._close_room, room
        )

    def _close_room(self, room: Room) -> None:
        self._closing.pop(room.id, None)
        if room.participants or self.rooms.get(room.id) is not room:
            return
        room.chat.clear()
        del self.rooms[room.id]
        self._locks.pop(room.id, None)
        self.observer.room_closed(room)

    def participant_count(self) -> int:
        return sum(len(room.participants) for room in self.rooms.values())

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                with contextlib.suppress(Exception):
                    await room.remove(participant, "serverShutdown")
            room.chat.clear()
        for handle in self._closing.values():
            handle.cancel()
        self._closing.clear()
        self.rooms.clear()
