"""Passthrough forwarding: encoded frames from a publisher's receiver to every subscriber.

The receiver's decoder queue is replaced by an `EncodedFrameTap`, so complete encoded frames
(after aiortc's depayloader and jitter buffer) come to `TrackForwarder.on_frame` on the event
loop and the decoder thread never decodes anything. Each subscriber gets a `ForwardedTrack`
whose `recv()` returns `av.Packet`s; aiortc's sender then only re-packetizes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError

from media import aiortc_hooks
from media.keyframes import KeyframeRequester

log = logging.getLogger(__name__)

VIDEO_QUEUE_FRAMES = 30
AUDIO_QUEUE_FRAMES = 50


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether an encoded frame can start decoding (audio frames always can)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # VP8 payload header: bit 0 of the first byte is the inverse key frame flag.
        return len(data) > 0 and (data[0] & 0x01) == 0
    if mime == "video/h264":
        return any(nal_type in (5, 7) for nal_type in h264_nal_types(data))
    return not mime.startswith("video/")


def h264_nal_types(annex_b: bytes) -> list[int]:
    """NAL unit types of an Annex-B H.264 access unit (start codes 00 00 01 / 00 00 00 01)."""
    types = []
    index = annex_b.find(b"\x00\x00\x01")
    while index != -1 and index + 3 < len(annex_b):
        types.append(annex_b[index + 3] & 0x1F)
        index = annex_b.find(b"\x00\x00\x01", index + 3)
    return types


class FrameConsumer(Protocol):
    """Anything fed with every encoded frame of a track (subscribers, later recorders)."""

    def push(self, packet: av.Packet, keyframe: bool) -> None: ...


class EncodedFrameTap:
    """Stands in for the receiver's decoder queue: frames go to the forwarder, not the decoder.

    `put(None)` (end of stream) and `get()` pass through to the original queue, so the idle
    decoder thread still exits when the receiver stops.
    """

    def __init__(self, original: queue.Queue[Any], on_frame: Callable[[Any, Any], None]) -> None:
        self.original = original
        self._on_frame: Callable[[Any, Any], None] | None = on_frame

    def detach(self) -> None:
        """Drop frames from now on (still never decoding them)."""
        self._on_frame = None

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        if item is None:
            self.original.put(None)
            return
        if self._on_frame is not None:
            codec, encoded_frame = item
            self._on_frame(codec, encoded_frame)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.original.get(*args, **kwargs)


@dataclass
class ForwarderStats:
    frames: int = 0
    """Encoded frames received from the publisher."""
    keyframes: int = 0
    """Of which keyframes."""
    bytes: int = 0
    """Payload bytes received."""
    subscribers_peak: int = 0
    """Most subscribers at once."""
    first_frame_at: float | None = None
    """Unix time of the first frame (telemetry: media started)."""
    last_frame_at: float | None = None
    """Unix time of the latest frame (telemetry: stalls, media stopped)."""


class ForwardedTrack(MediaStreamTrack):
    """One subscriber's copy of a published track; `recv()` returns encoded `av.Packet`s."""

    def __init__(self, forwarder: TrackForwarder) -> None:
        super().__init__()
        self.kind = forwarder.kind
        self._forwarder = forwarder
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self._limit = VIDEO_QUEUE_FRAMES if self.kind == "video" else AUDIO_QUEUE_FRAMES
        self._started = False
        self._awaiting_keyframe = self.kind == "video"
        self.dropped = 0
        """Frames dropped for this subscriber (before its first keyframe or on overflow)."""
        self.delivered = 0
        """Frames handed to the sender."""

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        # Before the sender first asks (ICE/DTLS still connecting) frames would only pile up.
        if not self._started or self.readyState != "live":
            return
        if self._awaiting_keyframe:
            if not keyframe:
                self.dropped += 1
                return
            self._awaiting_keyframe = False
        if self._queue.qsize() >= self._limit:
            self._flush()
            self.dropped += self._limit
            if self.kind == "video":
                # A gap in video cannot be decoded across: wait for the next keyframe.
                self._awaiting_keyframe = True
                self.request_keyframe()
                return
        self._queue.put_nowait(packet)

    def _flush(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def request_keyframe(self) -> None:
        if self.kind == "video":
            self._forwarder.request_keyframe()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            self._started = True
            self.request_keyframe()
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        self.delivered += 1
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._flush()
            self._queue.put_nowait(None)
            self._forwarder.unsubscribe(self)


class TrackForwarder:
    """One per published track: owns the tap, fans encoded frames out, asks for keyframes."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        track: MediaStreamTrack,
        keyframe_interval_s: float = 0.5,
    ) -> None:
        self.kind: str = track.kind
        self.receiver = receiver
        self.mime_type: str | None = None
        """Codec of the frames seen so far, e.g. `video/H264`."""
        self.stats = ForwarderStats()
        self._consumers: list[FrameConsumer] = []
        self._keyframes = KeyframeRequester(self._send_pli, keyframe_interval_s)
        self._ended = asyncio.Event()
        self.paused = False
        """Frames are counted but not forwarded (a force-muted microphone)."""
        original = aiortc_hooks.get_decoder_queue(receiver)
        if isinstance(original, EncodedFrameTap):
            original = original.original  # a reused m-line: the previous forwarder's tap goes
        # The decoder thread (started by receiver.receive) reads `original` through the tap and
        # only ever sees the end-of-stream None.
        self._tap = EncodedFrameTap(original, self.on_frame)
        aiortc_hooks.swap_decoder_queue(receiver, self._tap)
        self._drain_task = asyncio.ensure_future(self._wait_for_end(track))

    @property
    def keyframe_requests(self) -> KeyframeRequester:
        return self._keyframes

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def subscribe(self) -> ForwardedTrack:
        track = ForwardedTrack(self)
        self.add_consumer(track)
        return track

    def add_consumer(self, consumer: FrameConsumer) -> None:
        self._consumers.append(consumer)
        self.stats.subscribers_peak = max(self.stats.subscribers_peak, len(self._consumers))

    def unsubscribe(self, consumer: FrameConsumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    def on_frame(self, codec: Any, encoded_frame: Any) -> None:
        data: bytes = encoded_frame.data
        if self.mime_type is None:
            self.mime_type = codec.mimeType
        keyframe = is_keyframe(codec.mimeType, data)
        packet = av.Packet(data)
        packet.pts = encoded_frame.timestamp
        packet.dts = encoded_frame.timestamp
        packet.time_base = Fraction(1, codec.clockRate)
        self.stats.frames += 1
        self.stats.bytes += len(data)
        self.stats.last_frame_at = time.time()
        if self.stats.first_frame_at is None:
            self.stats.first_frame_at = self.stats.last_frame_at
        if keyframe and self.kind == "video":
            self.stats.keyframes += 1
        if self.paused:
            return
        for consumer in tuple(self._consumers):
            consumer.push(packet, keyframe)

    def request_keyframe(self) -> None:
        if self.kind == "video" and not self.ended:
            self._keyframes.request()

    def _send_pli(self) -> None:
        for source in self.receiver.getSynchronizationSources():
            asyncio.ensure_future(aiortc_hooks.send_pli(self.receiver, source.source))

    async def _wait_for_end(self, track: MediaStreamTrack) -> None:
        # Nobody else reads the receiver's track: it only ever yields the end-of-stream marker.
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        self._keyframes.close()
        for consumer in tuple(self._consumers):
            if isinstance(consumer, ForwardedTrack):
                consumer.stop()
        self._consumers.clear()

    async def stop(self) -> None:
        self._drain_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain_task
        self._finish()
        # The receiver goes on (its m-line may carry a later publication): what still arrives
        # is dropped, never decoded.
        self._tap.detach()
