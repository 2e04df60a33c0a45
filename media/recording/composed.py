"""Composed recording: the room as one H.264 + AAC MP4, laid out like the call.

Threads (per recorder):
* the **decode thread** (the recorder's queue consumer) decodes every track — H.264/VP8 with
  PyAV, Opus to 48 kHz mono float — and files the results on the recording clock: video frames
  in a short per-track queue (oldest dropped), audio samples in a per-track `AudioTimeline`;
* the **compose thread** runs a clock: frame k (at k / fps s) is built `latency_s` after its
  time has passed in wall time, so frames and audio that belong to it have arrived. It picks
  each track's latest frame at or before that time (repeating the last one when there is none),
  lays the tiles out (grid; a screen share large with cameras in a strip), draws names, mixes
  the audio span, encodes (libx264 + AAC) and muxes into a fragmented MP4. If it falls more
  than a second behind it skips ticks (counted) instead of building latency.

A suspended track (its publisher is reconnecting) keeps its tile where it was, blank under its
name, and is silent; once resumed its new source is drawn there again (never a picture frozen
from before the gap).

While recording the file is `composed.part.mp4` (fragments of `fragment_s`, flushed): a crash
loses at most about `fragment_s + latency_s`. A clean `stop()` remuxes it (stream copy) into a
fast-start `composed.mp4` and deletes the part file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.recording import muxing
from media.recording.canvas import Canvas, name_band, scaled_planes
from media.recording.layout import LayoutOptions, Tile, TileSpec, compose_layout
from media.recording.manifest import (
    RecordingManifest,
    RecordingResult,
    TrackEntry,
    write_manifest_text,
)
from media.recording.mixer import SAMPLE_RATE, AudioTimeline, mix
from media.recording.packetqueue import QueuedPacket
from media.recording.recorder import Recorder, RecordingTrack

log = logging.getLogger(__name__)

PART_NAME = "composed.part.mp4"
FILE_NAME = "composed.mp4"
MAX_LAG_S = 1.0
"""The compose thread skips ticks once it is this far behind its clock."""
VIDEO_FRAMES_KEPT = 24
"""Decoded frames kept per video track ahead of the compose clock (stale ones dropped)."""
DECODERS = {"h264": "h264", "vp8": "vp8", "opus": "libopus"}


@dataclass
class _Stop:
    at_s: float


class _VideoInput:
    """Decode-thread and compose-thread state of one video track."""

    def __init__(self, track: RecordingTrack) -> None:
        self.track = track
        self.decoder: Any = None
        self.expected_sequence = 1
        self.epoch = 0
        self.awaiting_keyframe = False
        self.frames: deque[tuple[float, av.VideoFrame]] = deque(maxlen=VIDEO_FRAMES_KEPT)
        self.lock = threading.Lock()
        self.current: tuple[float, av.VideoFrame] | None = None
        self.scaled: tuple[Any, Any, Any] | None = None
        self.decoded = 0
        self.dropped = 0

    def frame_at(self, t: float) -> av.VideoFrame | None:
        """The latest frame at or before `t`; the previous one if nothing new (compose thread).

        None while the track is away (suspended), and after it came back until its new source's
        first frame: a gap is drawn blank, not frozen."""
        with self.lock:
            while self.frames and self.frames[0][0] <= t:
                self.current = self.frames.popleft()
        if self.current is None or self.track.away_at(t):
            return None
        back = self.track.back_since(t)
        if back is not None and self.current[0] < back:
            return None
        return self.current[1]


class _AudioInput:
    def __init__(self, track: RecordingTrack) -> None:
        self.track = track
        self.decoder: Any = None
        self.resampler: Any = None
        self.timeline = AudioTimeline()
        self.expected_sequence = 1
        self.epoch = 0
        self.decoded = 0
        self.dropped = 0


class CompositeRecorder(Recorder):
    """Records the room as one MP4; see the module docstring."""

    mode = "composed"
    queue_capacity = 400
    """Encoded frames waiting for the decode thread (~2.5 s of two camera publications)."""

    def __init__(
        self,
        output_dir: Path | str,
        *,
        resolution: tuple[int, int] = (1280, 720),
        fps: int = 25,
        layout: LayoutOptions | None = None,
        preset: str = "veryfast",
        crf: int = 23,
        max_bitrate: int | None = 2_500_000,
        audio_bitrate: int = 96_000,
        encoder_threads: int = 0,
        latency_s: float = 0.3,
        fragment_s: float = muxing.FRAGMENT_S,
        draw_names: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(output_dir, **kwargs)
        self.width, self.height = resolution
        Canvas(self.width, self.height)  # validates the size now, not in the thread
        self.fps = fps
        self.layout_options = layout or LayoutOptions()
        self.preset, self.crf, self.max_bitrate = preset, crf, max_bitrate
        self.audio_bitrate = audio_bitrate
        self.encoder_threads = encoder_threads
        self.latency_s = latency_s
        self.fragment_s = fragment_s
        self.draw_names = draw_names
        self._video: dict[str, _VideoInput] = {}
        self._audio: dict[str, _AudioInput] = {}
        self._inputs_lock = threading.Lock()
        self._stop_at: float | None = None
        self._compose_thread: threading.Thread | None = None
        self._compose_error: BaseException | None = None
        self._manifest: RecordingManifest | None = None
        self._manifest_lock = threading.Lock()
        self._manifest_dirty = False
        self.frames_encoded = 0
        self.ticks_skipped = 0
        self.layout_changes = 0

    # ---- event loop ------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._manifest = RecordingManifest(
            mode=self.mode,
            started_at=self.started_at,
            files=[PART_NAME],
            options={
                "resolution": f"{self.width}x{self.height}",
                "fps": self.fps,
                "latency_s": self.latency_s,
                "fragment_s": self.fragment_s,
            },
        )
        self._manifest_dirty = True  # written by the compose thread

    def _track_added(self, track: RecordingTrack) -> None:
        codec = track.info.codec
        if codec not in DECODERS:
            raise ValueError(f"cannot decode {track.info.mime_type}")
        with self._inputs_lock:
            if track.info.kind == "video":
                self._video[track.track_id] = _VideoInput(track)
            else:
                self._audio[track.track_id] = _AudioInput(track)
        info = track.info
        with self._manifest_lock:
            assert self._manifest is not None
            self._manifest.tracks.append(
                TrackEntry(
                    track_id=track.track_id,
                    publication_id=info.publication_id,
                    participant_id=info.participant_id,
                    participant_name=info.participant_name,
                    kind=info.kind,
                    video_type=info.video_type,
                    codec=codec,
                    file=PART_NAME,
                    start_offset_s=round(track.added_at_s, 3),
                )
            )
            self._manifest_dirty = True

    def _track_removed(self, track: RecordingTrack) -> None:
        with self._manifest_lock:
            assert self._manifest is not None
            for entry in self._manifest.tracks:
                if entry.track_id == track.track_id:
                    entry.stop_offset_s = round(track.removed_at_s or 0.0, 3)
                    entry.gaps = track.gap_list(track.removed_at_s or 0.0)
            self._manifest_dirty = True

    def _stop_requested(self, at_s: float) -> None:
        self._stop_at = at_s
        self._queue.put_control(_Stop(at_s))

    # ---- decode thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._compose_thread = threading.Thread(
            target=self._run_compose, name=f"recorder-compose-{self.directory.name}", daemon=True
        )
        self._compose_thread.start()
        try:
            while True:
                item = self._queue.get(timeout=0.5)
                if isinstance(item, QueuedPacket):
                    self._decode(item)
                elif isinstance(item, _Stop):
                    break
                if self._compose_thread is not None and not self._compose_thread.is_alive():
                    break  # the compose thread failed: nothing would use decoded frames
        finally:
            self._compose_thread.join()
        if self._compose_error is not None:
            raise self._compose_error

    def _decode(self, item: QueuedPacket) -> None:
        track_id = item.track.track_id
        with self._inputs_lock:
            video = self._video.get(track_id)
            audio = self._audio.get(track_id) if video is None else None
        if video is not None:
            self._decode_video(video, item)
        elif audio is not None:
            self._decode_audio(audio, item)

    def _decode_video(self, video: _VideoInput, item: QueuedPacket) -> None:
        if item.sequence != video.expected_sequence:
            video.dropped += item.sequence - video.expected_sequence
            video.awaiting_keyframe = True
        video.expected_sequence = item.sequence + 1
        if video.awaiting_keyframe:
            if not item.keyframe:
                video.dropped += 1
                return
            video.awaiting_keyframe = False
        if item.epoch != video.epoch:
            video.epoch = item.epoch  # a resumed track's new source: a fresh decoder
            video.decoder = None
        if video.decoder is None:
            video.decoder = av.CodecContext.create(DECODERS[video.track.info.codec], "r")
            video.decoder.thread_count = 1  # frame threads would add a frame of delay each
        try:
            frames = video.decoder.decode(av.Packet(item.data))
        except av.error.FFmpegError:
            video.dropped += 1
            video.awaiting_keyframe = True
            self._call_on_loop(lambda: video.track.request_keyframe(force=True))
            return
        for frame in frames:
            video.decoded += 1
            with video.lock:
                video.frames.append((item.time_s, frame))

    def _decode_audio(self, audio: _AudioInput, item: QueuedPacket) -> None:
        if item.sequence != audio.expected_sequence:
            audio.dropped += item.sequence - audio.expected_sequence
        audio.expected_sequence = item.sequence + 1
        if item.epoch != audio.epoch:
            audio.epoch = item.epoch  # a resumed track's new source: a fresh decoder
            audio.decoder = None
        if audio.decoder is None:
            audio.decoder = av.CodecContext.create(DECODERS["opus"], "r")
            audio.decoder.sample_rate = SAMPLE_RATE
            audio.decoder.layout = "stereo"
            audio.resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            frames = audio.decoder.decode(av.Packet(item.data))
        except av.error.FFmpegError:
            audio.dropped += 1
            return
        position = round(item.time_s * SAMPLE_RATE)
        for frame in frames:
            for mono in audio.resampler.resample(frame):
                samples = mono.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                audio.timeline.write(position, samples)
                position += len(samples)
                audio.decoded += 1

    # ---- compose thread --------------------------------------------------------------------

    def _run_compose(self) -> None:
        try:
            self._compose_loop()
        except BaseException as error:
            log.exception("compose thread failed")
            self._compose_error = error

    def _open_output(self) -> tuple[Any, Any, Any]:
        options = muxing.fragmented_mp4_options(self.fragment_s)
        container = av.open(str(self.directory / PART_NAME), "w", format="mp4", options=options)
        video = container.add_stream("libx264", rate=self.fps)
        video.width, video.height, video.pix_fmt = self.width, self.height, "yuv420p"
        video.codec_context.gop_size = self.fps * 2
        video.codec_context.thread_count = self.encoder_threads
        x264 = {"preset": self.preset, "tune": "zerolatency", "crf": str(self.crf)}
        if self.max_bitrate:
            x264["maxrate"] = str(self.max_bitrate)
            x264["bufsize"] = str(self.max_bitrate * 2)
        video.codec_context.options = x264
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.codec_context.layout = "mono"
        audio.codec_context.bit_rate = self.audio_bitrate
        return container, video, audio

    def _compose_loop(self) -> None:
        self._write_manifest_if_changed()
        container, video_stream, audio_stream = self._open_output()
        canvas = Canvas(self.width, self.height)
        fifo = av.AudioFifo()
        start = self._started_monotonic
        index = 0
        audio_position = 0
        layout_key: tuple[TileSpec, ...] | None = None
        tiles: list[Tile] = []
        try:
            while True:
                t = index / self.fps
                stop_at = self._stop_at
                if stop_at is not None and t >= stop_at:
                    break
                wait = start + t + self.latency_s - self._clock()
                if wait > 0:
                    time.sleep(wait)  # at most one frame interval; stop() is seen next tick
                    continue
                behind = self._clock() - (start + t + self.latency_s)
                if behind > MAX_LAG_S:
                    caught_up = int((self._clock() - start - self.latency_s) * self.fps)
                    self.ticks_skipped += caught_up - index
                    index = caught_up
                    continue
                specs = self._specs_at(t)
                if specs != layout_key:
                    layout_key = specs
                    tiles = compose_layout(self.width, self.height, specs, self.layout_options)
                    self.layout_changes += 1
                self._draw(canvas, tiles, t)
                for packet in video_stream.encode(canvas.to_frame(index)):
                    container.mux(packet)
                self.frames_encoded += 1
                audio_end = round((index + 1) * SAMPLE_RATE / self.fps)
                audio_position = self._mix_audio(
                    fifo, audio_stream, container, audio_position, audio_end
                )
                index += 1
                self._write_manifest_if_changed()
            for packet in video_stream.encode(None):
                container.mux(packet)
            tail = fifo.read()
            if tail is not None:
                for packet in audio_stream.encode(tail):
                    container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
        self._forget_removed(float("inf"))

    def _specs_at(self, t: float) -> tuple[TileSpec, ...]:
        """One tile per publication present at recording time `t`, in the order they came."""
        with self._inputs_lock:
            tracks = [v.track for v in self._video.values()] + [
                a.track for a in self._audio.values()
            ]
        tracks.sort(key=lambda track: track.track_id)
        specs: dict[str, TileSpec] = {}
        for track in tracks:
            removed = track.removed_at_s
            if track.added_at_s <= t and (removed is None or t < removed):
                info = track.info
                screen = info.video_type == "screen"
                spec = TileSpec(info.publication_id, info.participant_name, screen)
                if info.publication_id not in specs or info.kind == "video":
                    specs[info.publication_id] = spec
        self._forget_removed(t)
        return tuple(specs.values())

    def _forget_removed(self, t: float) -> None:
        def gone(track: RecordingTrack) -> bool:
            return track.removed_at_s is not None and track.removed_at_s + 1.0 < t

        with self._inputs_lock:
            for track_id in [k for k, v in self._video.items() if gone(v.track)]:
                del self._video[track_id]
            for track_id in [k for k, a in self._audio.items() if gone(a.track)]:
                del self._audio[track_id]

    def _draw(self, canvas: Canvas, tiles: list[Tile], t: float) -> None:
        canvas.clear()
        by_publication: dict[str, _VideoInput] = {}
        with self._inputs_lock:
            for candidate in self._video.values():
                removed = candidate.track.removed_at_s
                if candidate.track.added_at_s <= t and (removed is None or t < removed):
                    by_publication[candidate.track.info.publication_id] = candidate
        for tile in tiles:
            video = by_publication.get(tile.key)
            frame = video.frame_at(t) if video is not None else None
            if video is not None and frame is not None:
                cached = video.scaled
                if cached is None or cached[0] is not frame or cached[1] != tile.video:
                    target, planes = scaled_planes(frame, tile.video)
                    video.scaled = cached = (frame, tile.video, (target, planes))
                target, planes = cached[2]
                canvas.paste(planes, target)
            if self.draw_names and tile.label.height >= 8:
                canvas.paste_luma(
                    name_band(tile.name, tile.label.width, tile.label.height), tile.label
                )

    def _mix_audio(self, fifo: Any, stream: Any, container: Any, position: int, end: int) -> int:
        if end <= position:
            return position
        with self._inputs_lock:
            timelines = [a.timeline for a in self._audio.values()]
        samples = mix([timeline.read(position, end) for timeline in timelines], end - position)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = position
        frame.time_base = Fraction(1, SAMPLE_RATE)
        fifo.write(frame)
        frame_size = stream.codec_context.frame_size or 1024
        while fifo.samples >= frame_size:
            for packet in stream.encode(fifo.read(frame_size)):
                container.mux(packet)
        return end

    def _write_manifest_if_changed(self) -> None:
        if not self._manifest_dirty:
            return
        with self._manifest_lock:
            assert self._manifest is not None
            self._manifest_dirty = False
            text = self._manifest.to_json()
        write_manifest_text(self.directory, text)

    # ---- after the threads -----------------------------------------------------------------

    def _finish(self) -> RecordingResult:
        assert self._manifest is not None
        part = self.directory / PART_NAME
        final = self.directory / FILE_NAME
        muxing.remux_faststart(part, final)
        part.unlink()  # only once the fast-start copy is complete
        duration = self._stop_at or 0.0
        dropped = self._queue.dropped
        with self._manifest_lock:
            manifest = self._manifest
            for entry in manifest.tracks:
                entry.file = FILE_NAME
            manifest.status = "stopped"
            manifest.duration_s = round(duration, 3)
            manifest.files = [FILE_NAME]
            manifest.write(self.directory)
        stats = {
            "frames_encoded": self.frames_encoded,
            "ticks_skipped": self.ticks_skipped,
            "layout_changes": self.layout_changes,
            "queue_dropped": dropped,
        }
        return RecordingResult(
            directory=self.directory,
            files=[final],
            duration_s=duration,
            size_bytes=final.stat().st_size,
            tracks=list(manifest.tracks),
            manifest=self.directory / "manifest.json",
            dropped=dropped + self.ticks_skipped,
            stats=stats,
        )
