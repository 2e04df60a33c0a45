"""Load test worker: many participants in one process, publishing packets and counting frames.

Run as `python -m bench.loadtest_participants`; reads a `LoadConfig` line on stdin, then
commands (bench/loadtest_messages.py). Each participant is a `ParloirClient`:

* publishing: a `ClipTrack` of its own pre-encoded clip (video) and the shared Opus clip, so
  the process encodes nothing while running; PLI from the server reaches the video track;
* subscribing: every received track gets an `EncodedFrameTap` in place of its decoder queue
  (before its receiver starts): complete encoded frames are counted, their bytes summed and
  their RTP timestamps followed (frames missing from the sequence are loss), never decoded;
* sampled (one per room): its first video subscription is also passed on to aiortc's decoder,
  and every decoded frame's painted room marker and publisher slot are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from bench import loadtest_messages as msg
from bench.loadtest_media import (
    AUDIO_STEP,
    VIDEO_CLOCK,
    ClipTrack,
    encode_marked_clip,
    encode_tone_clip,
    parse_identity,
    read_marks,
)
from bench.processes import describe_error, emit, serve_worker
from media import aiortc_hooks
from media.forwarding import EncodedFrameTap
from media.ice import configure_gathering
from media.recording.replay import EncodedClip
from signaling.client import ParloirClient, ReceivedTrack

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 10.0
ROOMS_SEEN_KEPT = 4


class TrackCounter:
    """Frames of one received track: how many, how many bytes, how many the timestamps span."""

    def __init__(self, step_ticks: int) -> None:
        self.step_ticks = step_ticks
        self.units = 0
        self.bytes = 0
        self.first_at: float | None = None
        self._first_ts: int | None = None
        self._last_ts: int | None = None

    def count(self, size: int, timestamp: int) -> None:
        self.units += 1
        self.bytes += size
        if self._first_ts is None:
            self._first_ts = timestamp
            self.first_at = time.monotonic()
        if self._last_ts is None or timestamp > self._last_ts:
            self._last_ts = timestamp

    def snapshot(self) -> msg.TrackCounts:
        expected = 0
        if self._first_ts is not None and self._last_ts is not None:
            expected = round((self._last_ts - self._first_ts) / self.step_ticks) + 1
        return msg.TrackCounts(units=self.units, expected=expected, bytes=self.bytes)


class ContentChecker:
    """Reads decoded frames of one subscription and checks the painted room and publisher."""

    def __init__(self, seat: msg.LoadSeat, publisher: str | None) -> None:
        self.check = msg.ContentCheck(
            seat=seat.identity, room_index=seat.room_index, publisher=publisher
        )
        marks = parse_identity(publisher) if publisher else None
        self.expected_slot = marks[1] if marks else None

    async def run(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                self.inspect(await track.recv())

    def inspect(self, frame: av.VideoFrame) -> None:
        check = self.check
        check.frames_decoded += 1
        marks = read_marks(frame.to_ndarray(format="gray"))
        if marks is None:
            check.unreadable += 1
            return
        room, slot, _ = marks
        if room != check.room_index:
            check.wrong_room += 1
        if slot != self.expected_slot:
            check.wrong_publisher += 1
        if room not in check.rooms_seen and len(check.rooms_seen) < ROOMS_SEEN_KEPT:
            check.rooms_seen.append(room)


class Subscription:
    def __init__(self, publication_id: str, fps: int) -> None:
        self.publication_id = publication_id
        self.video = TrackCounter(VIDEO_CLOCK // fps)
        self.audio = TrackCounter(AUDIO_STEP)
        self.reference_at: float | None = None
        """When the participant could first know of the publication (see SeatJoin)."""


class LoadParticipant:
    def __init__(self, config: msg.LoadConfig, seat: msg.LoadSeat, clips: ClipLibrary) -> None:
        self.config = config
        self.seat = seat
        self.clips = clips
        self.client = ParloirClient(
            config.url,
            token=seat.token,
            room=seat.room,
            name=seat.identity,
            on_track=self._track_arrived,
            ssl=False if config.insecure else None,
        )
        self.subscriptions: dict[str, Subscription] = {}
        self.checker: ContentChecker | None = None
        self.joining_at: float | None = None
        self.joined = False
        self.join_s: float | None = None
        self.error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tracks: list[ClipTrack] = []
        self._all_media = asyncio.Event()

    @property
    def expected(self) -> int:
        return sum(1 for slot in self.config.publisher_slots if slot != self.seat.slot)

    def receiving(self) -> int:
        return sum(1 for s in self.subscriptions.values() if s.video.first_at is not None)

    async def join(self) -> None:
        """Connect, and publish if this seat publishes; raises on failure."""
        self.joining_at = time.monotonic()
        timeout = self.config.join_timeout_s
        await self.client.connect(timeout=timeout)
        if self.seat.publishes:
            video_clip, audio_clip = await self.clips.for_seat(self.seat)
            video = ClipTrack(video_clip, VIDEO_CLOCK // self.config.fps)
            audio = ClipTrack(audio_clip, AUDIO_STEP)
            self._tracks += [video, audio]
            await self.client.publish(
                audio=audio, video=video, video_codec=self.config.codec.upper(), timeout=timeout
            )
            self._route_keyframe_requests(video)
        self.join_s = round(time.monotonic() - self.joining_at, 4)
        self.joined = True

    def _route_keyframe_requests(self, video: ClipTrack) -> None:
        assert self.client.publisher_pc is not None
        for transceiver in self.client.publisher_pc.getTransceivers():
            if transceiver.sender.track is video:
                aiortc_hooks.route_keyframe_requests(transceiver.sender, video.request_keyframe)

    async def wait_for_media(self) -> None:
        """Until video came from every expected publication, or the media timeout."""
        if self.receiving() >= self.expected:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_media.wait(), self.config.media_timeout_s)

    def result(self) -> msg.SeatJoin:
        first_frames = [
            round(s.video.first_at - s.reference_at, 4)
            for s in self.subscriptions.values()
            if s.video.first_at is not None and s.reference_at is not None
        ]
        return msg.SeatJoin(
            identity=self.seat.identity,
            room_index=self.seat.room_index,
            joined=self.joined,
            join_s=self.join_s,
            expected=self.expected,
            receiving=self.receiving(),
            first_frame_s=first_frames,
            error=self.error,
        )

    # ---- receiving -----------------------------------------------------------------------

    def _track_arrived(self, received: ReceivedTrack) -> None:
        # Called inside setRemoteDescription, before any media: the tap is in place in time.
        subscription = self.subscriptions.get(received.publication_id)
        if subscription is None:
            subscription = Subscription(received.publication_id, self.config.fps)
            subscription.reference_at = (
                self.joining_at
                if received.publication_id in self._live_at_join()
                else time.monotonic()
            )
            self.subscriptions[received.publication_id] = subscription
        counter = subscription.video if received.kind == "video" else subscription.audio
        receiver = received.receiver
        original = aiortc_hooks.get_decoder_queue(receiver)
        decode = False
        if received.kind == "video" and self.seat.sampled and self.checker is None:
            self.checker = ContentChecker(self.seat, self._identity_of(received.participant_id))
            self._tasks.append(asyncio.ensure_future(self.checker.run(received.track)))
            decode = True

        def on_frame(codec: Any, encoded_frame: Any) -> None:
            first = counter.units == 0
            counter.count(len(encoded_frame.data), encoded_frame.timestamp)
            if first and received.kind == "video" and self.receiving() >= self.expected:
                self._all_media.set()
            if decode:
                original.put((codec, encoded_frame))

        aiortc_hooks.swap_decoder_queue(receiver, EncodedFrameTap(original, on_frame))

    def _joined_message(self) -> dict[str, Any]:
        return next((m for m in self.client.events.messages if m["type"] == "joined"), {})

    def _live_at_join(self) -> set[str]:
        return {str(p["id"]) for p in self._joined_message().get("publications", [])}

    def _identity_of(self, participant_id: str) -> str | None:
        people = list(self._joined_message().get("participants", []))
        people += [
            m["participant"]
            for m in self.client.events.messages
            if m["type"] == "participant-joined"
        ]
        return next((str(p["identity"]) for p in people if p["id"] == participant_id), None)

    def counts(self) -> list[msg.SubscriptionCounts]:
        return [
            msg.SubscriptionCounts(
                seat=self.seat.identity,
                room_index=self.seat.room_index,
                publication_id=s.publication_id,
                video=s.video.snapshot(),
                audio=s.audio.snapshot(),
            )
            for s in self.subscriptions.values()
        ]

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.leave(), LEAVE_TIMEOUT_S)
        for track in self._tracks:
            track.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ClipLibrary:
    """Each publisher's clip, encoded once in a thread (never on the event loop, where the
    participants already joined are sending and receiving), and the one shared Opus clip."""

    def __init__(self, config: msg.LoadConfig) -> None:
        self.config = config
        self._audio: EncodedClip | None = None
        self._lock = asyncio.Lock()

    async def for_seat(self, seat: msg.LoadSeat) -> tuple[EncodedClip, EncodedClip]:
        loop = asyncio.get_running_loop()
        config = self.config
        async with self._lock:  # one encode at a time: the others are in the same process
            if self._audio is None:
                self._audio = await loop.run_in_executor(None, encode_tone_clip)
            video = await loop.run_in_executor(
                None,
                lambda: encode_marked_clip(
                    seat.room_index,
                    seat.slot,
                    codec=config.codec,
                    width=config.width,
                    height=config.height,
                    fps=config.fps,
                    bitrate=config.video_bitrate,
                ),
            )
        return video, self._audio


class LoadParticipants:
    """The participants of one worker process and the commands they obey."""

    def __init__(self, config: msg.LoadConfig) -> None:
        self.config = config
        self.clips = ClipLibrary(config)
        self.participants: list[LoadParticipant] = []

    async def join(self, command: msg.Join) -> msg.Joined:
        limit = asyncio.Semaphore(max(1, self.config.join_concurrency))
        fresh = [LoadParticipant(self.config, seat, self.clips) for seat in command.seats]
        self.participants += fresh

        async def join(participant: LoadParticipant) -> msg.SeatJoin:
            async with limit:
                try:
                    await participant.join()
                except Exception as exc:
                    participant.error = describe_error(exc)
            # Outside the limit: waiting for others' media must not keep them from joining.
            if participant.joined:
                await participant.wait_for_media()
            return participant.result()

        return msg.Joined(seats=list(await asyncio.gather(*(join(p) for p in fresh))))

    def counts(self) -> msg.Counts:
        return msg.Counts(
            at=time.monotonic(),
            subscriptions=[c for p in self.participants for c in p.counts()],
        )

    def report(self) -> msg.Report:
        return msg.Report(
            content=[p.checker.check for p in self.participants if p.checker is not None]
        )

    async def leave(self) -> None:
        await asyncio.gather(*(p.leave() for p in self.participants))


async def serve(config: msg.LoadConfig, commands: asyncio.StreamReader) -> None:
    configure_gathering(config.ice_addresses)
    participants = LoadParticipants(config)
    try:
        while line := await commands.readline():
            command = msg.COMMAND.validate_json(line)
            if isinstance(command, msg.Join):
                emit(await participants.join(command))
            elif isinstance(command, msg.Mark):
                emit(participants.counts())
            else:
                emit(participants.report())
                break
    finally:
        await participants.leave()


async def main() -> None:
    await serve_worker(msg.LoadConfig, serve)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
