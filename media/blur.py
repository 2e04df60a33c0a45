"""Server-side background blur of a published camera track: `BlurredSource`.

A `BlurredSource` wraps the publication's video `TrackForwarder` and is what subscribers (and a
recorder) subscribe to. Blur off: the publisher's encoded frames pass straight through, as with
passthrough (no decoding, one extra function call per frame). Blur on: the frames go to one
worker thread that decodes them, blurs the background (`BlurProcessor`), encodes once in the
room codec and hands the packets back to the event loop, which fans them out to every
subscriber exactly like passthrough. Subscribers keep the same track objects across switches:
nothing is renegotiated.

The privacy promise: from the moment `set_blur(True)` is called (synchronously, before its
first await) no raw frame is handed to any subscriber or consumer, and raw packets still queued
for a subscriber are discarded. Subscribers see their last frame until the first blurred
keyframe. If blur cannot run (model missing, pipeline failure) the publication stays frozen
(`BlurState.UNAVAILABLE`) until the participant turns blur off: it fails closed. Turning blur off
asks the publisher for a keyframe and forwards raw again from it.

Latency does not grow under load: every encoded frame must be decoded (later frames depend on
it), but of the frames decoded in one pass of the worker only the newest is blurred and encoded;
the others are dropped as stale. If even decoding falls `MAX_PENDING_FRAMES` behind, the backlog
is dropped and the publisher asked for a keyframe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import av

from media.blur_codec import (
    ENCODER_TIME_BASE,
    ENCODERS,
    EncoderSettings,
    FrameDecoder,
    FrameEncoder,
)
from media.blur_segmentation import LANDSCAPE, SQUARE, BlurUnavailable
from media.forwarding import ForwardedTrack, ForwarderStats, FrameConsumer
from media.keyframes import KeyframeRequester

if TYPE_CHECKING:
    from media.blur_processor import BlurProcessor

log = logging.getLogger(__name__)

__all__ = [
    "BlurState",
    "BlurStatus",
    "BlurStats",
    "BlurStrength",
    "BlurUnavailable",
    "BlurredSource",
    "BlurredTrack",
    "EncoderSettings",
]

MAX_PENDING_FRAMES = 8
"""Encoded frames waiting for the worker before the backlog is dropped (about 270 ms)."""
ENCODER_KEYFRAME_INTERVAL_S = 0.5
"""Subscribers' keyframe requests are coalesced like the ones sent upstream."""
WORKER_STOP_TIMEOUT_S = 5.0
LATENCY_SAMPLES = 600
_worker_ids = itertools.count(1)


class BlurStrength(StrEnum):
    """How blurred the background is (the participant's choice)."""

    LOW = "low"
    HIGH = "high"


class BlurState(StrEnum):
    OFF = "off"
    """Raw frames are forwarded."""
    STARTING = "starting"
    """Blur requested; no blurred frame delivered yet (subscribers see a still frame)."""
    ON = "on"
    """Blurred frames are flowing."""
    UNAVAILABLE = "unavailable"
    """Blur requested but it cannot run: nothing is forwarded until blur is turned off."""


@dataclass(frozen=True)
class BlurStatus:
    """What the signaling layer tells the participant."""

    state: BlurState
    strength: BlurStrength
    reason: str | None = None
    """Why blur is unavailable (safe to show), else None."""

    @property
    def requested(self) -> bool:
        return self.state is not BlurState.OFF


@dataclass
class BlurStats:
    """Counters of the blur path (frames while blur is off are not counted here)."""

    frames_in: int = 0
    """Encoded frames from the publisher handed to the worker."""
    frames_decoded: int = 0
    frames_blurred: int = 0
    """Frames blurred and encoded."""
    frames_stale: int = 0
    """Decoded frames dropped because a newer one was already there."""
    frames_out: int = 0
    """Encoded blurred frames delivered to subscribers."""
    keyframes_out: int = 0
    backlog_drops: int = 0
    """Times the worker fell MAX_PENDING_FRAMES behind and its backlog was dropped."""
    decode_errors: int = 0
    decode_s: float = 0.0
    """Worker wall time in the decoder."""
    encode_s: float = 0.0
    """Worker wall time in the encoder."""
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    """Recent added latencies: publisher frame handed to the source -> blurred frame out."""

    def latency_ms(self, quantile: float = 0.5) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, int(quantile * len(ordered)))
        return 1000 * ordered[index]

    def mean_latency_ms(self) -> float | None:
        return 1000 * statistics.fmean(self.latencies_s) if self.latencies_s else None


class BlurUpstream(Protocol):
    """What a BlurredSource needs from the publication's track (a TrackForwarder)."""

    kind: str
    mime_type: str | None

    def add_consumer(self, consumer: FrameConsumer) -> None: ...

    def unsubscribe(self, consumer: FrameConsumer) -> None: ...

    def request_keyframe(self) -> None: ...

    async def stop(self) -> None: ...


class BlurredTrack(ForwardedTrack):
    """One subscriber's copy of a BlurredSource: a ForwardedTrack (same keyframe gating, queue
    limit and PLI semantics) that can be told the stream restarts."""

    def restart_at_keyframe(self) -> None:
        """Discard what is queued and wait for the next keyframe (the stream switched)."""
        self._flush()
        self._awaiting_keyframe = True


class _UpstreamSubscription(ForwardedTrack):
    """The BlurredSource's own subscription to the publisher's TrackForwarder.

    A ForwardedTrack because that is how a forwarder tells its consumers the publisher's track
    ended (it stops them); frames go straight to the source, no queue.
    """

    def __init__(self, upstream: BlurUpstream, source: BlurredSource) -> None:
        super().__init__(upstream)  # type: ignore[arg-type]
        self._source = source

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        self._source._on_upstream_frame(packet, keyframe)

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._source._on_upstream_ended()


@dataclass
class _Job:
    generation: int
    mime_type: str
    packet: av.Packet
    keyframe: bool
    arrived: float


class _BlurWorker:
    """The thread that decodes, blurs and encodes one stream. Talks to the loop only through
    `call_soon_threadsafe`; everything it shares with the loop is under `_lock`."""

    def __init__(
        self,
        source: BlurredSource,
        settings: EncoderSettings,
        strength: BlurStrength,
        processor_factory: Callable[[], BlurProcessor],
    ) -> None:
        self._source = source
        self._loop = asyncio.get_running_loop()
        self._settings = settings
        self._processor_factory = processor_factory
        self._lock = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._strength = strength
        self._force_keyframe = False
        self._resync = False
        self._stopping = False
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        """Done once the model is loaded; its exception is a BlurUnavailable."""
        self.processor: BlurProcessor | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"parloir-blur-{next(_worker_ids)}", daemon=True
        )
        self._thread.start()

    # Called from the event loop.

    def submit(self, job: _Job) -> bool:
        """Queue one encoded frame; False if the backlog was full and has been dropped."""
        with self._lock:
            overflow = len(self._pending) >= MAX_PENDING_FRAMES
            if overflow:
                self._pending.clear()
                self._resync = True
            self._pending.append(job)
            self._lock.notify()
        return not overflow

    def discard_pending(self) -> None:
        with self._lock:
            self._pending.clear()

    def set_strength(self, strength: BlurStrength) -> None:
        with self._lock:
            self._strength = strength

    def force_keyframe(self) -> None:
        with self._lock:
            self._force_keyframe = True

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._pending.clear()
            self._lock.notify()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # The worker thread.

    def _run(self) -> None:
        processor: BlurProcessor | None = None
        try:
            try:
                processor = self._processor_factory()
                for model in (SQUARE, LANDSCAPE):  # failures surface in set_blur, not later
                    processor.load(model)
            except BlurUnavailable as exc:
                self.ready.set_exception(exc)
                return
            except Exception as exc:
                self.ready.set_exception(BlurUnavailable(f"segmentation does not start: {exc}"))
                return
            self.processor = processor
            self.ready.set_result(None)
            self._loop_until_stopped(processor)
        except Exception as exc:
            log.exception("blur worker failed")
            reason = exc.reason if isinstance(exc, BlurUnavailable) else f"blur failed: {exc}"
            self._call_loop(self._source._on_worker_failed, self, reason)
        finally:
            if processor is not None:
                processor.close()

    def _loop_until_stopped(self, processor: BlurProcessor) -> None:
        stats = self._source.blur_stats
        encoder: FrameEncoder | None = None
        decoder: FrameDecoder | None = None
        decoder_generation = encoder_generation = -1
        decoder_mime = ""
        awaiting_keyframe = True
        last_pts = -1
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                batch = list(self._pending)
                self._pending.clear()
                force_keyframe, self._force_keyframe = self._force_keyframe, False
                if self._resync:
                    self._resync = False
                    awaiting_keyframe = True
                strength = self._strength
            latest: tuple[av.VideoFrame, _Job] | None = None
            start = time.perf_counter()
            for job in batch:
                if job.generation != decoder_generation or decoder_mime != job.mime_type:
                    # A new blur period: its first frame follows a gap, start afresh.
                    decoder = FrameDecoder(job.mime_type)
                    decoder_mime = job.mime_type
                    decoder_generation = job.generation
                    awaiting_keyframe = True
                    processor.reset()
                if awaiting_keyframe and not job.keyframe:
                    continue
                awaiting_keyframe = False
                assert decoder is not None
                try:
                    frames = decoder.decode(job.packet)
                except av.FFmpegError:
                    stats.decode_errors += 1
                    awaiting_keyframe = True
                    self._call_loop(self._source._request_upstream_keyframe)
                    continue
                stats.frames_decoded += len(frames)
                for frame in frames:
                    if latest is not None:
                        stats.frames_stale += 1
                    latest = (frame, job)
            stats.decode_s += time.perf_counter() - start
            if latest is None:
                continue
            frame, job = latest
            blurred = processor.process(frame, strength)
            start = time.perf_counter()
            pts = _to_encoder_pts(job.packet)
            pts = max(pts, last_pts + 1)  # the encoder needs strictly increasing timestamps
            last_pts = pts
            blurred.pts = pts
            keyframe = force_keyframe or job.generation != encoder_generation
            encoder_generation = job.generation
            if encoder is None or encoder.mime_type != job.mime_type.lower():
                encoder = FrameEncoder(job.mime_type, self._settings)
            encoded = encoder.encode(blurred, keyframe)
            stats.encode_s += time.perf_counter() - start
            stats.frames_blurred += 1
            for data, is_keyframe in encoded:
                packet = av.Packet(data)
                packet.pts = packet.dts = job.packet.pts
                packet.time_base = job.packet.time_base
                self._call_loop(
                    self._source._deliver, job.generation, packet, is_keyframe, job.arrived
                )

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(callback, *args)


def default_processor() -> BlurProcessor:
    """The real pipeline. Imported here, in the worker thread, so that a missing native
    library (OpenCV's libGL, mediapipe) makes blur unavailable instead of breaking imports."""
    from media.blur_processor import BlurProcessor

    return BlurProcessor()


def _to_encoder_pts(packet: av.Packet) -> int:
    pts = packet.pts or 0
    time_base = packet.time_base or ENCODER_TIME_BASE
    if time_base == ENCODER_TIME_BASE:
        return pts
    return int(pts * time_base / ENCODER_TIME_BASE)


class BlurredSource:
    """A publication's camera video as subscribers get it, with background blur switchable at
    run time (PublishedSource protocol; frames stay encoded from the subscribers' side).

    Create it on the event loop around the publication's video forwarder and subscribe through
    it, blur on or off. It owns the forwarder: `stop()` stops both.
    """

    forwards_encoded = True

    def __init__(
        self,
        upstream: BlurUpstream,
        *,
        strength: BlurStrength = BlurStrength.LOW,
        encoder: EncoderSettings | None = None,
        on_status: Callable[[BlurStatus], None] | None = None,
        processor_factory: Callable[[], BlurProcessor] = default_processor,
    ) -> None:
        if upstream.kind != "video":
            raise ValueError("background blur applies to video tracks")
        self.kind = "video"
        self.blur_stats = BlurStats()
        self._upstream = upstream
        self._strength = strength
        self._encoder_settings = encoder or EncoderSettings()
        self._on_status = on_status
        self._processor_factory = processor_factory
        self._consumers: list[FrameConsumer] = []
        self._blurring = False
        self._paused = False
        self._generation = 0
        self._restart_gate = False
        self._state = BlurState.OFF
        self._reason: str | None = None
        self._worker: _BlurWorker | None = None
        self._retired_workers: list[_BlurWorker] = []
        self._ended = False
        self._encoder_keyframes = KeyframeRequester(
            self._force_encoder_keyframe, ENCODER_KEYFRAME_INTERVAL_S
        )
        self._subscription = _UpstreamSubscription(upstream, self)
        upstream.add_consumer(self._subscription)

    # The PublishedSource protocol.

    def subscribe(self) -> BlurredTrack:
        track = BlurredTrack(self)  # type: ignore[arg-type]
        self.add_consumer(track)
        return track

    def request_keyframe(self) -> None:
        """A subscriber needs a keyframe: from the blur encoder when blurring, else upstream."""
        if self._ended:
            return
        if self._blurring:
            self._encoder_keyframes.request()
        else:
            self._upstream.request_keyframe()

    async def stop(self) -> None:
        self._end()
        for worker in self._retired_workers:
            await asyncio.to_thread(worker.join, WORKER_STOP_TIMEOUT_S)
        self._retired_workers.clear()
        await self._upstream.stop()

    # Consumers other than subscribers (a recorder): they get what subscribers get.

    def add_consumer(self, consumer: FrameConsumer) -> None:
        self._consumers.append(consumer)

    def unsubscribe(self, consumer: FrameConsumer) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    # The switch.

    @property
    def status(self) -> BlurStatus:
        return BlurStatus(self._state, self._strength, self._reason)

    async def set_blur(self, on: bool, strength: BlurStrength | None = None) -> BlurStatus:
        """Turn blur on or off (and/or change its strength) for every subscriber.

        Turning it on stops raw forwarding at once, then waits until the model is loaded
        (about 1 s the first time in a process, then ~15 ms). Raises BlurUnavailable if it
        cannot run; the publication then stays frozen until `set_blur(False)`.
        """
        if strength is not None and strength is not self._strength:
            self._strength = strength
            if self._worker is not None:
                self._worker.set_strength(strength)
            if not on or self._blurring:
                self._notify()
        if self._ended:
            raise BlurUnavailable("the publication has ended")
        if not on:
            if self._blurring:
                self._switch(False)
                self._set_state(BlurState.OFF)
            return self.status
        if not self._blurring:
            self._switch(True)  # nothing raw is forwarded from here on
            self._set_state(BlurState.STARTING)
        mime_type = self._upstream.mime_type
        if mime_type is not None and mime_type.lower() not in ENCODERS:
            reason = f"background blur does not support {mime_type}"
            self._fail(reason)
            raise BlurUnavailable(reason)
        worker = self._worker
        if worker is None:  # first use, or a retry after a failure
            worker = self._worker = _BlurWorker(
                self, self._encoder_settings, self._strength, self._processor_factory
            )
            self._set_state(BlurState.STARTING)
        loading = not worker.ready.done()
        try:
            await asyncio.wrap_future(worker.ready)  # raises the load failure, even if done
        except BlurUnavailable as exc:
            if self._worker is worker:
                self._retire_worker()
                if self._blurring:
                    self._fail(exc.reason)
            raise
        if loading and self._blurring and self._worker is worker:
            # Frames were dropped while the model loaded: the decoder starts at a keyframe.
            self._upstream.request_keyframe()
        if self._state is BlurState.UNAVAILABLE:
            raise BlurUnavailable(self._reason or "blur failed")
        return self.status

    def _switch(self, on: bool) -> None:
        self._blurring = on
        self._restart_stream()

    def _restart_stream(self) -> None:
        """What consumers get next starts a new stream (blur switched, or resumed after a
        pause): raw packets still queued for a subscriber are thrown away and every consumer
        waits for a keyframe of the new stream."""
        self._generation += 1
        self._restart_gate = True
        for consumer in self._consumers:
            if isinstance(consumer, BlurredTrack):
                consumer.restart_at_keyframe()
        worker = self._worker
        if worker is not None:
            worker.discard_pending()
        # Raw: forwarding restarts at a keyframe. Blur: the decoder starts at one (asked for
        # here if the model is loaded already, else once it is).
        if not self._blurring or (worker is not None and worker.ready.done()):
            self._upstream.request_keyframe()

    @property
    def paused(self) -> bool:
        """Nothing is forwarded or blurred while True (force mute of the camera)."""
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            if self._worker is not None:
                self._worker.discard_pending()
        elif not self._ended:
            self._restart_stream()  # the stream has a gap: resume at a keyframe

    # Frames.

    def _on_upstream_frame(self, packet: av.Packet, keyframe: bool) -> None:
        if self._ended or self._paused:
            return
        if not self._blurring:
            self._fan_out(packet, keyframe)
            return
        # Blurring: this raw frame goes to the worker and nowhere else.
        worker = self._worker
        if worker is None or not worker.ready.done() or self._state is BlurState.UNAVAILABLE:
            return
        self.blur_stats.frames_in += 1
        mime_type = self._upstream.mime_type or ""
        job = _Job(self._generation, mime_type, packet, keyframe, time.monotonic())
        if not worker.submit(job):
            self.blur_stats.backlog_drops += 1
            self._upstream.request_keyframe()

    def _deliver(self, generation: int, packet: av.Packet, keyframe: bool, arrived: float) -> None:
        if generation != self._generation or not self._blurring or self._ended or self._paused:
            return  # blurred before a switch or a pause: stale
        self.blur_stats.latencies_s.append(time.monotonic() - arrived)
        self.blur_stats.frames_out += 1
        self.blur_stats.keyframes_out += int(keyframe)
        if self._state is BlurState.STARTING:
            self._set_state(BlurState.ON)
        self._fan_out(packet, keyframe)

    def _fan_out(self, packet: av.Packet, keyframe: bool) -> None:
        if self._restart_gate:
            if not keyframe:
                return
            self._restart_gate = False
        for consumer in tuple(self._consumers):
            consumer.push(packet, keyframe)

    def _force_encoder_keyframe(self) -> None:
        if self._worker is not None:
            self._worker.force_keyframe()

    def _request_upstream_keyframe(self) -> None:
        if not self._ended:
            self._upstream.request_keyframe()

    # State.

    def _set_state(self, state: BlurState, reason: str | None = None) -> None:
        if (state, reason) == (self._state, self._reason):
            return
        self._state, self._reason = state, reason
        self._notify()

    def _notify(self) -> None:
        if self._on_status is not None:
            try:
                self._on_status(self.status)
            except Exception:
                log.exception("blur status callback failed")

    def _fail(self, reason: str) -> None:
        log.warning("background blur unavailable: %s", reason)
        self._set_state(BlurState.UNAVAILABLE, reason)

    def _on_worker_failed(self, worker: _BlurWorker, reason: str) -> None:
        if worker is not self._worker:
            return
        self._retire_worker()
        if self._blurring and not self._ended:
            self._fail(reason)

    def _retire_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            self._retired_workers.append(worker)

    def _on_upstream_ended(self) -> None:
        self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._generation += 1
        self._encoder_keyframes.close()
        self._retire_worker()
        self._subscription.stop()
        for consumer in tuple(self._consumers):
            if isinstance(consumer, ForwardedTrack):
                consumer.stop()
        self._consumers.clear()

    # What the rest of the SFU reads on any published source.

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def mime_type(self) -> str | None:
        return self._upstream.mime_type

    @property
    def upstream(self) -> BlurUpstream:
        return self._upstream

    @property
    def stats(self) -> ForwarderStats | None:
        """The publisher's frames as received (the forwarder's counters)."""
        return getattr(self._upstream, "stats", None)

    @property
    def keyframe_requests(self) -> KeyframeRequester | None:
        """Keyframe requests sent to the publisher."""
        return getattr(self._upstream, "keyframe_requests", None)

    @property
    def encoder_keyframe_requests(self) -> KeyframeRequester:
        """Keyframe requests answered by the blur encoder."""
        return self._encoder_keyframes

    @property
    def worker_profile(self) -> dict[str, float]:
        """Worker wall seconds per stage so far (decode, segment, composite, encode)."""
        processor = self._worker.processor if self._worker is not None else None
        return {
            "decode": self.blur_stats.decode_s,
            "segment": processor.times.segment if processor else 0.0,
            "composite": processor.times.composite if processor else 0.0,
            "encode": self.blur_stats.encode_s,
        }
