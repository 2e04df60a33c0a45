"""What a recording is made of, written next to its files as `manifest.json`.

The manifest is rewritten (atomically: temporary file, then rename) by the recorder's writer
thread whenever a file starts or ends, so after a crash it still lists every track that was
being written; `recovery.scan_recording` reads it back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class TrackInfo:
    """What the integrator knows about a published track when it hands it to a recorder."""

    publication_id: str
    """The Publication (Vonage stream) id."""
    participant_name: str
    """Shown under the tile in a composed recording; listed in the manifest."""
    kind: str
    """`audio` or `video`."""
    mime_type: str
    """The room codec, e.g. `video/H264`, `video/VP8`, `audio/opus`."""
    clock_rate: int
    """RTP clock of the packets' pts: 90000 for video, 48000 for Opus."""
    video_type: str = "camera"
    """`camera` or `screen` (the Publication's video type)."""
    participant_id: str = ""
    """The Participant (Vonage connection) id, for the manifest."""
    connection_data: str = ""
    """The participant's token data (Vonage `connectionData`), for the manifest."""

    @property
    def codec(self) -> str:
        """Lower-case codec name: `h264`, `vp8`, `opus`."""
        return self.mime_type.split("/", 1)[-1].lower()


@dataclass
class TrackEntry:
    """One file segment of one track (individual) or one track's presence (composed)."""

    track_id: str
    """Unique within the recording: `<segment number>-<publication id>-<kind>`."""
    publication_id: str
    """The Publication (Vonage stream) id."""
    participant_id: str
    """The Participant (Vonage connection) id, empty if the integrator gave none."""
    participant_name: str
    """The participant's display name."""
    kind: str
    """`audio` or `video`."""
    video_type: str
    """`camera` or `screen`."""
    codec: str
    """`h264`, `vp8` or `opus`."""
    file: str
    """File name relative to the recording directory ("" until the first packet is written);
    individual: the file of the track's stream, shared with the stream's other kind."""
    start_offset_s: float | None = None
    """Seconds from the recording start to this segment's first written frame."""
    stop_offset_s: float | None = None
    """Seconds from the recording start to the end of this segment's last frame."""
    gaps: list[list[float]] = field(default_factory=list)
    """[from, to] seconds from the recording start during which the track had no source (its
    publisher was reconnecting); the segment goes on after each."""
    packets: int = 0
    """Encoded frames written."""
    dropped: int = 0
    """Frames dropped: writer queue overflow, or waiting for a keyframe after a gap."""
    width: int | None = None
    """Video size from the first keyframe."""
    height: int | None = None
    """Video size from the first keyframe."""


@dataclass
class StreamFileEntry:
    """One file of an individual recording: a stream's audio and video, muxed together."""

    file: str
    """File name relative to the recording directory: `<stream id>.webm` (VP8 and/or Opus) or
    `<stream id>.mkv` (H.264); a stream removed and added again gets `<stream id>-2.…`."""
    publication_id: str
    """The Publication (Vonage stream) id."""
    participant_id: str
    """The Participant (Vonage connection) id."""
    participant_name: str
    """The participant's display name."""
    connection_data: str
    """The participant's token data (Vonage `connectionData`)."""
    video_type: str
    """`camera` or `screen`."""
    kinds: list[str] = field(default_factory=list)
    """The file's streams, `audio` and/or `video`."""
    start_offset_s: float | None = None
    """Seconds from the recording start to the file's time 0 (its earliest frame)."""
    stop_offset_s: float | None = None
    """Seconds from the recording start to the end of the file's last frame."""


@dataclass
class RecordingManifest:
    """Everything needed to play, sync or recover a recording without the database."""

    mode: str
    """`individual` or `composed`."""
    started_at: float
    """Unix time of the recording start (offset 0)."""
    status: str = "recording"
    """`recording` while written, `stopped` after a clean stop, `recovered` after a scan."""
    duration_s: float | None = None
    """Set at stop (or by recovery: the playable duration)."""
    files: list[str] = field(default_factory=list)
    """Final files, relative to the recording directory."""
    tracks: list[TrackEntry] = field(default_factory=list)
    """Track segments in the order they started."""
    streams: list[StreamFileEntry] = field(default_factory=list)
    """Individual: the stream files in the order they started."""
    options: dict[str, Any] = field(default_factory=dict)
    """Recorder settings (resolution, fps, ...) for the record."""
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordingManifest:
        known = {f.name for f in fields(TrackEntry)}
        tracks = [TrackEntry(**{k: v for k, v in t.items() if k in known}) for t in data["tracks"]]
        known = {f.name for f in fields(StreamFileEntry)}
        streams = [
            StreamFileEntry(**{k: v for k, v in t.items() if k in known})
            for t in data.get("streams", [])
        ]
        top = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in top}
        return cls(**{**given, "tracks": tracks, "streams": streams})

    def write(self, directory: Path) -> None:
        """Replace `manifest.json` atomically (blocking: call from a worker thread)."""
        write_manifest_text(directory, self.to_json())


def write_manifest_text(directory: Path, text: str) -> None:
    """Write `manifest.json` through a temporary file and a rename: never half-written."""
    temporary = directory / (MANIFEST_NAME + ".tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, directory / MANIFEST_NAME)


def read_manifest(directory: Path) -> RecordingManifest | None:
    path = Path(directory) / MANIFEST_NAME
    try:
        return RecordingManifest.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class RecordingResult:
    """What `stop()` hands back to the integrator (storage row, webhook, API)."""

    directory: Path
    """The recording directory."""
    files: list[Path]
    """Media files to serve: one MP4 (composed) or one file per stream (individual)."""
    duration_s: float
    """Recording length, start to stop."""
    size_bytes: int
    """Total size of `files`."""
    tracks: list[TrackEntry]
    """The manifest's track entries."""
    manifest: Path
    """`manifest.json`."""
    dropped: int = 0
    """Frames lost inside the recorder (queues full, writer or encoder behind)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Recorder-specific counters (frames encoded, ticks skipped, ...)."""
    streams: list[StreamFileEntry] = field(default_factory=list)
    """Individual: the manifest's stream files (`files` in the same order)."""
