"""Individual recording: every track stream-copied to its own file, no decoding.

H.264 goes to fragmented MP4, VP8 to WebM, Opus to an audio-only WebM; `manifest.json` lists
each file with its participant, publication, kind, codec and start/stop offsets from the
recording start. A track removed and added again gets a new file (a new segment). A track
suspended and resumed (its publisher reconnected, same stream id) goes on in the same file: the
new source's frames are placed on the recording clock after the gap, so the file has one stream
per track with a hole in its timestamps, as Vonage individual archives have one file per stream.
Each video file starts at a keyframe; after a gap (writer behind, queue overflow, a resume) the
writer skips to the next keyframe rather than write undecodable frames.

Threads: one writer thread per recorder; all files are opened, written and closed there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.recording import muxing
from media.recording.manifest import RecordingManifest, RecordingResult, TrackEntry
from media.recording.packetqueue import QueuedPacket
from media.recording.recorder import Recorder, RecordingTrack

log = logging.getLogger(__name__)

SUPPORTED_CODECS = ("h264", "vp8", "opus")


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
class _SegmentFile:
    """Writer-thread state of one track segment."""

    track: RecordingTrack
    entry: TrackEntry
    container: Any = None
    stream: Any = None
    pts_offset: int = 0
    """Added to a packet's pts to give the file's (the first packet is at 0)."""
    first_time_s: float = 0.0
    """Recording time of the first packet written."""
    epoch: int = 0
    """The track source (`QueuedPacket.epoch`) whose pts `pts_offset` maps."""
    last_pts: int | None = None
    frame_ticks: int = 0
    after_gap: bool = False
    """The next packet written is the first after a resume: no frame length across the gap."""
    expected_sequence: int = 1
    awaiting_keyframe: bool = False
    failed: bool = False
    bytes_written: int = 0


class IndividualRecorder(Recorder):
    """Stream-copies each added track into its own file; see the module docstring."""

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
        self._segments_open: dict[str, _SegmentFile] = {}
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
                segment = self._segments_open.get(item.track.track_id)
                if segment is not None:
                    self._write(segment, item)
            elif isinstance(item, _Open):
                self._open(item.track)
            elif isinstance(item, _Close):
                self._close(item.track.track_id)
            elif isinstance(item, _Stop):
                for track_id in list(self._segments_open):
                    self._close(track_id)
                self._duration_s = item.at_s
                return

    def _open(self, track: RecordingTrack) -> None:
        assert self._manifest is not None
        info = track.info
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
        self._segments_open[track.track_id] = _SegmentFile(track, entry)

    def _write(self, segment: _SegmentFile, item: QueuedPacket) -> None:
        entry = segment.entry
        if segment.failed:
            return
        gap = item.sequence != segment.expected_sequence
        segment.expected_sequence = item.sequence + 1
        if gap:
            entry.dropped += 1
            if entry.kind == "video":
                segment.awaiting_keyframe = True
        if segment.container is not None and item.epoch != segment.epoch:
            self._continue_after_gap(segment, item)
        if segment.awaiting_keyframe:
            if not item.keyframe:
                entry.dropped += 1
                return
            segment.awaiting_keyframe = False
        try:
            if segment.container is None:
                self._open_file(segment, item)
            pts = item.pts + segment.pts_offset
            if segment.last_pts is not None and pts <= segment.last_pts:
                entry.dropped += 1  # out of order or repeated timestamp: muxer would refuse it
                return
            if segment.last_pts is not None and not segment.after_gap:
                segment.frame_ticks = pts - segment.last_pts
            segment.container.mux(
                muxing.copy_packet(
                    segment.stream, item.data, pts, segment.track.info.clock_rate, item.keyframe
                )
            )
        except Exception:
            log.exception("writing %s failed; the segment ends here", entry.track_id)
            segment.failed = True
            self._close(entry.track_id)
            return
        segment.last_pts = pts
        segment.after_gap = False
        segment.bytes_written += len(item.data)
        entry.packets += 1

    def _open_file(self, segment: _SegmentFile, first: QueuedPacket) -> None:
        assert self._manifest is not None
        info = segment.track.info
        entry = segment.entry
        name = f"{entry.track_id}.{muxing.EXTENSIONS[info.codec]}"
        container = muxing.open_copy_output(self.directory / name, info.codec, self.fragment_s)
        segment.container = container
        entry.file = name
        stream, size = muxing.add_copy_stream(container, info.codec, info.clock_rate, first.data)
        segment.stream = stream
        segment.pts_offset = -first.pts
        segment.first_time_s = first.time_s
        segment.epoch = first.epoch
        # May be slightly negative: the frame was captured just before the recording started.
        entry.start_offset_s = round(first.time_s, 3)
        if size is not None:
            entry.width, entry.height = size
        self._manifest.write(self.directory)

    def _continue_after_gap(self, segment: _SegmentFile, item: QueuedPacket) -> None:
        """A resumed track's new source: its pts start afresh, so place its first frame by the
        recording clock, after everything already written."""
        segment.epoch = item.epoch
        if segment.track.info.kind == "video" and not item.keyframe:
            segment.awaiting_keyframe = True  # its first keyframe was lost: wait for the next
        clock_rate = segment.track.info.clock_rate
        wanted = round((item.time_s - segment.first_time_s) * clock_rate)
        if segment.last_pts is not None:
            wanted = max(wanted, segment.last_pts + max(segment.frame_ticks, 1))
        segment.pts_offset = wanted - item.pts
        segment.after_gap = True

    def _close(self, track_id: str) -> None:
        assert self._manifest is not None
        segment = self._segments_open.pop(track_id, None)
        if segment is None:
            return
        entry = segment.entry
        if segment.container is not None:
            try:
                segment.container.close()
            except Exception:
                log.exception("closing %s failed", entry.file)
            if entry.packets == 0:
                (self.directory / entry.file).unlink(missing_ok=True)
                entry.file = ""
            entry.gaps = segment.track.gap_list(self.elapsed_s())
            if segment.last_pts is not None and entry.start_offset_s is not None:
                clock_rate = segment.track.info.clock_rate
                length = (segment.last_pts + segment.frame_ticks) / clock_rate
                entry.stop_offset_s = round(entry.start_offset_s + length, 3)
        self._manifest.write(self.directory)

    # ---- after the thread ------------------------------------------------------------------

    def _finish(self) -> RecordingResult:
        assert self._manifest is not None
        manifest = self._manifest
        files = [self.directory / e.file for e in manifest.tracks if e.file]
        manifest.status = "stopped"
        manifest.duration_s = round(self._duration_s, 3)
        manifest.files = [e.file for e in manifest.tracks if e.file]
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
        )
