"""What both recorders share: lifecycle, the per-track consumer, the hand-off to their thread.

Lifecycle, all on the event loop:

    recorder.start()                                   # offset 0 of the recording
    track = recorder.attach(forwarder, info)           # or add_track(info, request_keyframe)
    ...                                                # forwarder pushes packets into `track`
    recorder.suspend_track(track)                      # its publisher dropped, may come back
    recorder.resume_track(track, new_forwarder)        # back: same file / tile, after a gap
    recorder.remove_track(track)                       # publication gone (or at stop, implied)
    result = await recorder.stop()                     # threads finish, files closed

`push()` runs on the event loop for every encoded frame and only copies bytes into a bounded
queue; the recorder's own thread does all muxing, decoding and encoding.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import av

from media.recording.manifest import RecordingResult, TrackInfo
from media.recording.packetqueue import PacketQueue, QueuedPacket
from media.recording.timeline import TrackTimeline, receive_delay_s

log = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL_S = 1.0
"""While a video track waits for a keyframe, ask the forwarder again at most this often."""


class RecordableSource(Protocol):
    """What `attach()` needs from a published track: `media.forwarding.TrackForwarder`."""

    def add_consumer(self, consumer: Any) -> None: ...

    def unsubscribe(self, consumer: Any) -> None: ...

    def request_keyframe(self) -> None: ...


class RecordingTrack:
    """One track as a recorder consumes it; hand it to `TrackForwarder.add_consumer`."""

    def __init__(
        self,
        recorder: Recorder,
        info: TrackInfo,
        track_id: str,
        request_keyframe: Callable[[], None] | None,
    ) -> None:
        self.info = info
        self.track_id = track_id
        self.added_at_s = recorder.elapsed_s()
        """Recording time at which the integrator added the track."""
        self.removed_at_s: float | None = None
        """Recording time at which it was removed (None while live)."""
        self.source: RecordableSource | None = None
        """Set by `attach()` and `resume_track()`: unsubscribed on suspension and removal."""
        self.suspended = False
        """Its source ended and the same stream is expected back (`Recorder.suspend_track`)."""
        self.gaps: list[tuple[float, float | None]] = []
        """Recording times (from, to) the track was suspended; `to` is None while it is."""
        self.epoch = 0
        """+1 at every resume: the packets of a new source, whose pts start afresh."""
        self.skipped = 0
        """Frames ignored before the first keyframe."""
        self._recorder = recorder
        self._queue = recorder._queue
        self._clock = recorder._clock
        self._request_keyframe = request_keyframe
        self._last_request = -KEYFRAME_REQUEST_INTERVAL_S
        self._awaiting_keyframe = info.kind == "video"
        self._sequence = 0
        self._timeline = TrackTimeline(
            info.clock_rate, recorder._started_monotonic, receive_delay_s(info.kind)
        )
        self.closed = False

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        """Called by the forwarder on the event loop for every encoded frame of the track."""
        if self.closed or packet.pts is None:
            return
        if self._awaiting_keyframe:
            if not keyframe:
                self.skipped += 1
                self.request_keyframe()
                return
            self._awaiting_keyframe = False
        arrival = self._clock()
        self._sequence += 1
        item = QueuedPacket(
            self,
            self._sequence,
            bytes(packet),
            int(packet.pts),
            keyframe,
            self._timeline.place(int(packet.pts), arrival),
            self.epoch,
        )
        dropped = self._queue.put_packet(item)
        if dropped is not None and dropped.track.info.kind == "video":
            # The thread will skip to the next keyframe of that track: ask for one now.
            dropped.track.request_keyframe(force=True)

    def away_at(self, t: float) -> bool:
        """Whether recording time `t` falls in one of the track's gaps."""
        return any(start <= t and (end is None or t < end) for start, end in self.gaps)

    def gap_list(self, until: float) -> list[list[float]]:
        """The gaps as [from, to] rounded to the ms, one still open ending at `until` (manifest)."""
        return [
            [round(start, 3), round(end if end is not None else until, 3)]
            for start, end in self.gaps
        ]

    def back_since(self, t: float) -> float | None:
        """When the track last came back from a gap, at or before recording time `t`."""
        ends = [end for _, end in self.gaps if end is not None and end <= t]
        return max(ends) if ends else None

    def _restart(self, request_keyframe: Callable[[], None] | None) -> None:
        """A new source takes over (event loop): its pts are placed afresh, video waits for
        its first keyframe."""
        self.epoch += 1
        self._request_keyframe = request_keyframe
        self._last_request = -KEYFRAME_REQUEST_INTERVAL_S
        self._awaiting_keyframe = self.info.kind == "video"
        self._timeline = TrackTimeline(
            self.info.clock_rate, self._recorder._started_monotonic, receive_delay_s(self.info.kind)
        )

    def request_keyframe(self, force: bool = False) -> None:
        """Ask the publisher for a keyframe (event loop only; rate-limited unless forced)."""
        if self.info.kind != "video" or self._request_keyframe is None:
            return
        now = self._clock()
        if not force and now - self._last_request < KEYFRAME_REQUEST_INTERVAL_S:
            return
        self._last_request = now
        try:
            self._request_keyframe()
        except Exception:
            log.exception("keyframe request for %s failed", self.track_id)


class Recorder:
    """Base of `IndividualRecorder` and `CompositeRecorder`: one queue feeding one thread."""

    mode = ""
    queue_capacity = 600

    def __init__(self, output_dir: Path | str, *, clock: Callable[[], float] = time.monotonic):
        self.directory = Path(output_dir)
        self._clock = clock
        self._queue = PacketQueue(self.queue_capacity)
        self._tracks: list[RecordingTrack] = []
        self._segments = 0
        self._started_monotonic = 0.0
        self.started_at = 0.0
        """Unix time of offset 0."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stopped: asyncio.Future[RecordingResult] | None = None
        self.error: BaseException | None = None
        """What broke the recorder's thread, if anything did."""

    # ---- lifecycle (event loop) -----------------------------------------------------------

    def start(self) -> None:
        """Offset 0 of the recording; starts the recorder's thread. Call on the event loop."""
        if self._thread is not None:
            raise RuntimeError("recorder already started")
        self._loop = asyncio.get_running_loop()
        self._started_monotonic = self._clock()
        self.started_at = time.time()
        self._prepare()
        self._thread = threading.Thread(
            target=self._run_thread, name=f"recorder-{self.mode}-{self.directory.name}", daemon=True
        )
        self._thread.start()

    def elapsed_s(self) -> float:
        """Seconds since `start()`."""
        return self._clock() - self._started_monotonic

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    def add_track(
        self, info: TrackInfo, request_keyframe: Callable[[], None] | None = None
    ) -> RecordingTrack:
        """Start recording a track; feed the returned consumer with the track's packets.

        `request_keyframe` is called (on the event loop) when the recorder needs a keyframe:
        at once for video, and again after it had to drop frames.
        """
        if not self.running:
            raise RuntimeError("recorder is not running")
        self._segments += 1
        safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", info.publication_id)[:64]
        track = RecordingTrack(
            self, info, f"{self._segments:03d}-{safe_id}-{info.kind}", request_keyframe
        )
        self._track_added(track)  # raises for a codec the recorder cannot take
        self._tracks.append(track)
        track.request_keyframe(force=True)
        return track

    def attach(self, source: RecordableSource, info: TrackInfo) -> RecordingTrack:
        """`add_track` + `source.add_consumer`; `remove_track` then unsubscribes it too."""
        track = self.add_track(info, source.request_keyframe)
        track.source = source
        source.add_consumer(track)
        return track

    def suspend_track(self, track: RecordingTrack) -> None:
        """Its source ended but the same stream is expected back (its publisher is
        reconnecting): the track stays in the recording, a gap, until `resume_track` or
        `remove_track`. Individual: its file stays open; composed: its tile keeps its place,
        blank. Idempotent."""
        if track.closed or track.suspended:
            return
        track.suspended = True
        track.gaps.append((self.elapsed_s(), None))
        if track.source is not None:
            track.source.unsubscribe(track)
            track.source = None

    def resume_track(self, track: RecordingTrack, source: RecordableSource) -> None:
        """The suspended stream is back with a new source: record it on, after the gap."""
        if track.closed or not track.suspended:
            raise RuntimeError(f"track {track.track_id} is not suspended")
        track._restart(source.request_keyframe)
        start, _ = track.gaps[-1]
        track.gaps[-1] = (start, self.elapsed_s())
        track.suspended = False
        track.source = source
        source.add_consumer(track)
        track.request_keyframe(force=True)

    def remove_track(self, track: RecordingTrack) -> None:
        """Stop recording a track (its publication ended or was unpublished). Idempotent."""
        if track.closed:
            return
        track.closed = True
        track.removed_at_s = self.elapsed_s()
        if track.suspended:
            start, _ = track.gaps[-1]
            track.gaps[-1] = (start, track.removed_at_s)
        if track.source is not None:
            track.source.unsubscribe(track)
        self._track_removed(track)

    @property
    def tracks(self) -> list[RecordingTrack]:
        return list(self._tracks)

    async def stop(self) -> RecordingResult:
        """Stop, let the thread finish every file, return what was written.

        Idempotent; concurrent callers share one result. Raises RuntimeError if the recorder's
        thread failed (the files stay as they are: `recovery.recover_recording` them).
        """
        if self._thread is None:
            raise RuntimeError("recorder was never started")
        if self._stopped is None:
            self._stopping = True
            for track in self._tracks:
                self.remove_track(track)
            self._stop_requested(self.elapsed_s())
            self._stopped = asyncio.ensure_future(self._wind_down(self._thread))
        return await asyncio.shield(self._stopped)

    async def _wind_down(self, thread: threading.Thread) -> RecordingResult:
        await asyncio.to_thread(thread.join)
        if self.error is not None:
            raise RuntimeError(f"{self.mode} recorder failed") from self.error
        return await asyncio.to_thread(self._finish)

    # ---- for the thread --------------------------------------------------------------------

    def _run_thread(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._run()
        except BaseException as error:  # reported by stop(); the thread must not die silently
            log.exception("%s recorder thread failed", self.mode)
            self.error = error

    def _call_on_loop(self, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    # ---- subclass hooks --------------------------------------------------------------------

    def _prepare(self) -> None:
        """Before the thread starts (event loop; no file I/O here)."""

    def _track_added(self, track: RecordingTrack) -> None:
        """A track was added (event loop)."""

    def _track_removed(self, track: RecordingTrack) -> None:
        """A track was removed (event loop)."""

    def _stop_requested(self, at_s: float) -> None:
        """stop() was called at recording time `at_s` (event loop)."""
        raise NotImplementedError

    def _run(self) -> None:
        """The recorder's thread."""
        raise NotImplementedError

    def _finish(self) -> RecordingResult:
        """After the thread ended (worker thread): final files, manifest, result."""
        raise NotImplementedError
