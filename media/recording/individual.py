"""Individual recording: every stream stream-copied to its own file, no decoding.

As a Vonage individual stream archive: one file per stream (Publication) holding its audio and
video, named by the stream id: WebM for VP8 and/or Opus, Matroska (`.mkv`) when the video is
H.264. `manifest.json` lists each file with its participant, connection data and start/stop
offsets from the recording start (file time 0 is its start offset), and each track in it.

A stream's file opens once each of its tracks has its first frame (video: a keyframe), or
`OPEN_WAIT_S` after the first one came, without a track still silent then (Matroska cannot take a
stream after its header). A stream removed and added again gets a new file (`<id>-2.webm`). A
track suspended and resumed (its publisher reconnected, same stream id) goes on in the same file:
the new source's frames are placed on the recording clock after the gap, so the file has a hole
in its timestamps. Each video stream starts at a keyframe; after a gap (writer behind, queue
overflow, a resume) the writer skips to the next keyframe rather than write undecodable frames.
The files are written in short flushed clusters: after a crash they play up to the last one.

Threads: one writer thread per recorder; all files are opened, written and closed there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.recording import muxing
from media.recording.manifest import (
    RecordingManifest,
    RecordingResult,
    StreamFileEntry,
    TrackEntry,
)
from media.recording.packetqueue import QueuedPacket
from media.recording.recorder import Recorder, RecordingTrack

log = logging.getLogger(__name__)

SUPPORTED_CODECS = ("h264", "vp8", "opus")
OPEN_WAIT_S = 2.0
"""How long a stream's first frames wait for its other track's first frame (a video keyframe)
before its file opens without it."""


@dataclass
class _Open:
    track: RecordingTrack


@dataclass
class _Close:
    track: RecordingTrack
    at_s: float


@dataclass
class _Stop:
    at_s: float


@dataclass
class _TrackState:
    """Writer-thread state of one track in its stream's file."""

    track: RecordingTrack
    entry: TrackEntry
    stream: Any = None
    """Its stream in the file; None until the file opens (or if it opened without it)."""
    pts_offset: int = 0
    """Added to a packet's pts to give the file's (time 0: the file's start offset)."""
    epoch: int = 0
    """The track source (`QueuedPacket.epoch`) whose pts `pts_offset` maps."""
    last_pts: int | None = None
    frame_ticks: int = 0
    after_gap: bool = False
    """The next packet written is the first after a resume: no frame length across the gap."""
    expected_sequence: int = 1
    awaiting_keyframe: bool = False
    closed: bool = False


@dataclass
class _StreamFile:
    """Writer-thread state of one stream's file."""

    entry: StreamFileEntry
    tracks: dict[str, _TrackState] = field(default_factory=dict)
    """kind -> its track."""
    pending: list[QueuedPacket] = field(default_factory=list)
    """First frames held until the file opens."""
    container: Any = None
    origin_s: float = 0.0
    """Recording time at which the file's frames are placed at 0."""
    start_s: float = 0.0
    """The file's start offset: `origin_s`, or 0 if that is negative (the first frame was
    captured just before the recording started: the file starts with the recording, its
    frames reported those few ms late, audio and video alike)."""
    opened: bool = False
    failed: bool = False


class IndividualRecorder(Recorder):
    """Stream-copies each stream (audio + video) into its own file; see the module docstring."""

    mode = "individual"
    queue_capacity = 600
    """About 3 s of a room with two camera publications (2 x (30 + 50) frames/s)."""

    def __init__(
        self,
        output_dir: Path | str,
        *,
        fragment_s: float = muxing.FRAGMENT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(output_dir, **kwargs)
        self.fragment_s = fragment_s
        self._manifest: RecordingManifest | None = None
        self._files_open: dict[str, _StreamFile] = {}
        """publication id -> its file being written."""
        self._states: dict[str, tuple[_StreamFile, _TrackState]] = {}
        """track id -> its file and state, while the track is recorded."""
        self._names_used: set[str] = set()
        self._duration_s = 0.0

    def _prepare(self) -> None:
        self._manifest = RecordingManifest(
            mode=self.mode,
            started_at=self.started_at,
            options={"fragment_s": self.fragment_s},
        )

    def _track_added(self, track: RecordingTrack) -> None:
        if track.info.codec not in SUPPORTED_CODECS:
            raise ValueError(f"cannot stream-copy {track.info.mime_type}")
        self._queue.put_control(_Open(track))

    def _track_removed(self, track: RecordingTrack) -> None:
        self._queue.put_control(_Close(track, track.removed_at_s or self.elapsed_s()))

    def _stop_requested(self, at_s: float) -> None:
        self._queue.put_control(_Stop(at_s))

    # ---- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        assert self._manifest is not None
        self._manifest.write(self.directory)
        while True:
            item = self._queue.get(timeout=1.0)
            if item is None:
                continue
            if isinstance(item, QueuedPacket):
                found = self._states.get(item.track.track_id)
                if found is not None:
                    self._take(found[0], found[1], item)
            elif isinstance(item, _Open):
                self._open(item.track)
            elif isinstance(item, _Close):
                self._close(item.track.track_id)
            elif isinstance(item, _Stop):
                for track_id in list(self._states):
                    self._close(track_id)
                self._duration_s = item.at_s
                return

    def _open(self, track: RecordingTrack) -> None:
        assert self._manifest is not None
        info = track.info
        stream_file = self._files_open.get(info.publication_id)
        if stream_file is not None and (stream_file.opened or info.kind in stream_file.tracks):
            # Its file has its header written (or that kind already): this track cannot join
            # it. Only a stream re-added with a kind it lacked gets here (manual stream mode).
            log.warning("%s: its stream's file is already written without it", track.track_id)
            stream_file = None
        if stream_file is None:
            stream_file = _StreamFile(
                StreamFileEntry(
                    file="",
                    publication_id=info.publication_id,
                    participant_id=info.participant_id,
                    participant_name=info.participant_name,
                    connection_data=info.connection_data,
                    video_type=info.video_type,
                )
            )
            self._files_open.setdefault(info.publication_id, stream_file)
        entry = TrackEntry(
            track_id=track.track_id,
            publication_id=info.publication_id,
            participant_id=info.participant_id,
            participant_name=info.participant_name,
            kind=info.kind,
            video_type=info.video_type,
            codec=info.codec,
            file="",
        )
        self._manifest.tracks.append(entry)
        state = _TrackState(track, entry)
        stream_file.tracks[info.kind] = state
        self._states[track.track_id] = (stream_file, state)

    # ---- packets ---------------------------------------------------------------------------

    def _take(self, stream_file: _StreamFile, state: _TrackState, item: QueuedPacket) -> None:
        if stream_file.failed:
            return
        if stream_file.opened:
            self._write(stream_file, state, item)
            return
        stream_file.pending.append(item)
        heard = {p.track.track_id for p in stream_file.pending}
        waiting = [s for s in stream_file.tracks.values() if s.track.track_id not in heard]
        if not waiting or item.time_s - stream_file.pending[0].time_s >= OPEN_WAIT_S:
            self._open_file(stream_file)

    def _open_file(self, stream_file: _StreamFile) -> None:
        """Write the header with a stream per track that has a first frame, then the frames."""
        assert self._manifest is not None
        stream_file.opened = True
        pending, stream_file.pending = stream_file.pending, []
        firsts: dict[str, QueuedPacket] = {}
        for item in pending:
            firsts.setdefault(item.track.info.kind, item)
        if not firsts:
            return
        video = firsts.get("video")
        extension, muxer = muxing.STREAM_CONTAINERS[video.track.info.codec if video else None]
        entry = stream_file.entry
        name = self._file_name(entry.publication_id, extension)
        try:
            container = muxing.open_stream_output(self.directory / name, muxer, self.fragment_s)
        except Exception:
            log.exception("opening %s failed; the stream is not recorded", name)
            stream_file.failed = True
            return
        stream_file.container = container
        stream_file.origin_s = min(item.time_s for item in firsts.values())
        stream_file.start_s = max(0.0, stream_file.origin_s)
        entry.file = name
        entry.start_offset_s = round(stream_file.start_s, 3)
        for kind in ("video", "audio"):  # Vonage's order; also what players pick first
            first = firsts.get(kind)
            if first is None:
                continue
            state = stream_file.tracks[kind]
            info = state.track.info
            try:
                state.stream, size = muxing.add_copy_stream(
                    container, info.codec, info.clock_rate, first.data
                )
            except Exception:
                log.exception("%s: no stream for its first frame", state.entry.track_id)
                continue
            entry.kinds.append(kind)
            state.entry.file = name
            if size is not None:
                state.entry.width, state.entry.height = size
            self._place(stream_file, state, first)
        for state in stream_file.tracks.values():
            if state.stream is None:
                log.warning("%s: no frame before its stream's file opened", state.entry.track_id)
        self._manifest.streams.append(entry)
        self._manifest.write(self.directory)
        for item in pending:
            if not stream_file.failed:
                self._write(stream_file, stream_file.tracks[item.track.info.kind], item)

    def _file_name(self, publication_id: str, extension: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", publication_id)[:64] or "stream"
        name, number = f"{stem}.{extension}", 1
        while name in self._names_used:
            number += 1
            name = f"{stem}-{number}.{extension}"
        self._names_used.add(name)
        return name

    def _place(self, stream_file: _StreamFile, state: _TrackState, item: QueuedPacket) -> None:
        """Map `item`'s source onto the file's clock: `item` at its recording time, after
        everything already written (a resumed source's pts start afresh)."""
        state.epoch = item.epoch
        clock_rate = state.track.info.clock_rate
        wanted = round((item.time_s - stream_file.origin_s) * clock_rate)
        if state.last_pts is not None:
            wanted = max(wanted, state.last_pts + max(state.frame_ticks, 1))
            state.after_gap = True
        state.pts_offset = wanted - item.pts

    def _write(self, stream_file: _StreamFile, state: _TrackState, item: QueuedPacket) -> None:
        entry = state.entry
        if state.stream is None:
            entry.dropped += 1
            return
        gap = item.sequence != state.expected_sequence
        state.expected_sequence = item.sequence + 1
        if gap:
            entry.dropped += 1
            if entry.kind == "video":
                state.awaiting_keyframe = True
        if item.epoch != state.epoch:
            self._place(stream_file, state, item)
            if entry.kind == "video" and not item.keyframe:
                state.awaiting_keyframe = True  # its first keyframe was lost: wait for the next
        if state.awaiting_keyframe:
            if not item.keyframe:
                entry.dropped += 1
                return
            state.awaiting_keyframe = False
        clock_rate = state.track.info.clock_rate
        pts = item.pts + state.pts_offset
        if state.last_pts is not None and pts <= state.last_pts:
            entry.dropped += 1  # out of order or repeated timestamp: muxer would refuse it
            return
        try:
            stream_file.container.mux(
                muxing.copy_packet(state.stream, item.data, pts, clock_rate, item.keyframe)
            )
        except Exception:
            log.exception("writing %s failed; its file ends here", stream_file.entry.file)
            stream_file.failed = True
            self._close_file(stream_file)
            return
        if state.last_pts is not None and not state.after_gap:
            state.frame_ticks = pts - state.last_pts
        if state.last_pts is None:
            entry.start_offset_s = round(stream_file.start_s + pts / clock_rate, 3)
        state.last_pts = pts
        state.after_gap = False
        entry.packets += 1

    # ---- closing ---------------------------------------------------------------------------

    def _close(self, track_id: str) -> None:
        """A track ends: its file closes with the last of its stream's tracks."""
        found = self._states.pop(track_id, None)
        if found is None:
            return
        stream_file, state = found
        if not stream_file.opened and all(
            s.closed or s is state for s in stream_file.tracks.values()
        ):
            self._open_file(stream_file)  # the last of its tracks: write what it holds
        state.closed = True
        entry = state.entry
        entry.gaps = state.track.gap_list(self.elapsed_s())
        if state.last_pts is not None:
            length = (state.last_pts + state.frame_ticks) / state.track.info.clock_rate
            entry.stop_offset_s = round(stream_file.start_s + length, 3)
        if all(s.closed for s in stream_file.tracks.values()):
            self._close_file(stream_file)
        elif self._manifest is not None:
            self._manifest.write(self.directory)

    def _close_file(self, stream_file: _StreamFile) -> None:
        assert self._manifest is not None
        entry = stream_file.entry
        if self._files_open.get(entry.publication_id) is stream_file:
            del self._files_open[entry.publication_id]
        if stream_file.container is not None:
            container, stream_file.container = stream_file.container, None
            try:
                container.close()
            except Exception:
                log.exception("closing %s failed", entry.file)
            states = stream_file.tracks.values()
            if not any(s.entry.packets for s in states):
                (self.directory / entry.file).unlink(missing_ok=True)
                self._manifest.streams.remove(entry)
                for state in states:
                    state.entry.file = ""
            else:
                for state in states:
                    if state.last_pts is not None and state.entry.stop_offset_s is None:
                        length = (state.last_pts + state.frame_ticks) / state.track.info.clock_rate
                        state.entry.stop_offset_s = round(stream_file.start_s + length, 3)
                stops = [s.entry.stop_offset_s for s in states if s.entry.stop_offset_s is not None]
                entry.stop_offset_s = max(stops, default=entry.start_offset_s)
        self._manifest.write(self.directory)

    # ---- after the thread ------------------------------------------------------------------

    def _finish(self) -> RecordingResult:
        assert self._manifest is not None
        manifest = self._manifest
        files = [self.directory / s.file for s in manifest.streams]
        manifest.status = "stopped"
        manifest.duration_s = round(self._duration_s, 3)
        manifest.files = [s.file for s in manifest.streams]
        manifest.write(self.directory)
        return RecordingResult(
            directory=self.directory,
            files=files,
            duration_s=self._duration_s,
            size_bytes=sum(f.stat().st_size for f in files if f.exists()),
            tracks=list(manifest.tracks),
            manifest=self.directory / "manifest.json",
            dropped=self._queue.dropped,
            stats={"queue_dropped": self._queue.dropped},
            streams=list(manifest.streams),
        )
