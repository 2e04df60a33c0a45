"""Container plumbing shared by the recorders: stream-copy streams, fragmented MP4, remux, probe.

All of it blocks (file I/O, FFmpeg): call it from a recorder thread, never on the event loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

FRAGMENT_S = 0.5
"""Fragment length of fragmented MP4s; with `flush_packets` a `kill -9` loses about this much
plus what is still queued (AIORTC_SFU.md §4 measured < 1 s at 1 s fragments)."""

STREAM_CONTAINERS = {"h264": ("mkv", "matroska"), "vp8": ("webm", "webm"), None: ("webm", "webm")}
"""Extension and FFmpeg format of an individual stream's file, by its video codec (None: audio
only). As Vonage individual archives: VP8 + Opus in WebM, H.264 + Opus in Matroska."""


def fragmented_mp4_options(fragment_s: float = FRAGMENT_S) -> dict[str, str]:
    """Muxer options for an MP4 that stays readable up to its last fragment after a crash."""
    return {
        "movflags": "frag_keyframe+empty_moov+default_base_moof",
        "frag_duration": str(int(fragment_s * 1_000_000)),
        "flush_packets": "1",
    }


def open_stream_output(path: Path, muxer: str, fragment_s: float = FRAGMENT_S) -> Any:
    """A Matroska/WebM output for stream copy, written so a crash keeps what was muxed.

    Matroska is readable after a crash up to its last complete cluster: keep clusters short
    (the default is 5 s for audio) and flush each one to the file.
    """
    options = {"flush_packets": "1", "cluster_time_limit": str(int(fragment_s * 1000))}
    return av.open(str(path), "w", format=muxer, options=options)


def h264_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height of an H.264 access unit (decodes it once: SPS cropping done right)."""
    decoder = av.CodecContext.create("h264", "r")
    frames = list(decoder.decode(av.Packet(keyframe)))
    frames += list(decoder.decode(None))
    if not frames:
        raise ValueError("H.264 keyframe did not decode")
    return frames[0].width, frames[0].height


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1)."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise ValueError("not a VP8 keyframe")
    width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
    height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
    return width, height


def add_copy_stream(
    container: Any, codec: str, clock_rate: int, first: bytes
) -> tuple[Any, tuple[int, int] | None]:
    """A stream taking already-encoded packets of `codec` (`first`: the first keyframe).

    Returns the stream and, for video, the picture size read from `first`.
    """
    if codec == "opus":
        # PyAV cannot set extradata on a codec-less stream; an (unused) libopus encoder context
        # makes FFmpeg write the OpusHead that MP4/WebM need (AIORTC_SFU.md §4).
        stream = container.add_stream("libopus", rate=clock_rate)
        stream.codec_context.layout = "stereo"
        return stream, None
    width, height = h264_size(first) if codec == "h264" else vp8_size(first)
    stream = container.add_mux_stream(codec, width=width, height=height)
    stream.time_base = Fraction(1, clock_rate)
    return stream, (width, height)


def copy_packet(stream: Any, data: bytes, pts: int, clock_rate: int, keyframe: bool) -> Any:
    packet = av.Packet(data)
    packet.pts = pts
    packet.dts = pts
    packet.time_base = Fraction(1, clock_rate)
    packet.is_keyframe = keyframe
    packet.stream = stream
    return packet


def remux_faststart(source: Path, destination: Path) -> None:
    """Stream-copy `source` (e.g. a fragmented or partial MP4) into a plain fast-start MP4.

    Reads until the first undecodable byte, so a truncated fragmented MP4 gives what it holds.
    """
    remux(source, destination, "mp4", {"movflags": "+faststart"})


def remux(source: Path, destination: Path, muxer: str, options: dict[str, str]) -> None:
    """Stream-copy every audio and video stream of `source` into a new `muxer` file, which
    gets the index and duration a crash kept the source from writing.

    Reads until the first undecodable byte: a truncated file gives what it holds.
    """
    with av.open(str(source)) as reader:
        with av.open(str(destination), "w", format=muxer, options=options) as writer:
            mapping = {}
            for stream in reader.streams:
                if stream.type in ("video", "audio"):
                    mapping[stream.index] = writer.add_stream_from_template(stream)
            try:
                for packet in reader.demux(*[reader.streams[i] for i in mapping]):
                    if packet.dts is None:
                        continue
                    packet.stream = mapping[packet.stream.index]
                    writer.mux(packet)
            except av.error.InvalidDataError:
                pass  # a crash left a torn last fragment or cluster: keep everything before it


@dataclass
class StreamProbe:
    """What one stream of a file holds when read packet by packet."""

    kind: str
    """`audio` or `video`."""
    codec: str
    """FFmpeg codec name."""
    packets: int
    """Packets read."""
    first_s: float | None
    """Presentation time of the first packet."""
    end_s: float | None
    """Presentation time of the end of the last packet."""


@dataclass
class FileProbe:
    """How much of a media file can be read back."""

    path: Path
    """The file."""
    readable: bool
    """Whether FFmpeg could open it at all."""
    duration_s: float
    """Playable length: latest end time over its streams, 0 if unreadable."""
    streams: list[StreamProbe] = field(default_factory=list)
    """Per stream counts."""
    error: str | None = None
    """Why it could not be read (to the end)."""


def probe_file(path: Path) -> FileProbe:
    """Open `path` with PyAV and read every packet (no decoding) to find what is playable."""
    try:
        reader = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        return FileProbe(path, False, 0.0, error=str(error))
    probes: dict[int, StreamProbe] = {}
    failure: str | None = None
    with reader:
        streams = [s for s in reader.streams if s.type in ("video", "audio")]
        for stream in streams:
            name = stream.codec_context.name
            probes[stream.index] = StreamProbe(stream.type, name, 0, None, None)
        try:
            for packet in reader.demux(*streams):
                if packet.pts is None or packet.time_base is None:
                    continue
                entry = probes[packet.stream.index]
                start = float(packet.pts * packet.time_base)
                end = start + float((packet.duration or 0) * packet.time_base)
                entry.packets += 1
                entry.first_s = start if entry.first_s is None else min(entry.first_s, start)
                entry.end_s = end if entry.end_s is None else max(entry.end_s, end)
        except av.error.FFmpegError as caught:
            failure = str(caught)
    ends = [p.end_s for p in probes.values() if p.end_s is not None and math.isfinite(p.end_s)]
    duration = max(ends) if ends else 0.0
    return FileProbe(path, True, duration, list(probes.values()), failure)
