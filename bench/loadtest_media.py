"""The load test's synthetic media: encoded once, sent as packets, checkable on arrival.

Each publisher's video is a short clip of painted frames encoded once with PyAV (H.264
constrained baseline or VP8, a keyframe every second) and then looped by `ClipVideoTrack`,
whose `recv()` returns `av.Packet`s with advancing pts: aiortc's sender only packetizes them
(the `MediaPlayer(decode=False)` path), so a publisher costs no encoder. Audio is one second of
Opus looped the same way.

Every frame carries two painted 16-bit fields (media/synthetic.py's blocks): in the top rows
the publisher's slot and the frame's place in the clip, below them the room's marker. A
subscriber that decodes a frame knows which room and which publisher it came from, so media
from the wrong room is caught, not just media that stopped.
"""

from __future__ import annotations

import asyncio
import re
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.recording.replay import EncodedClip, encode_audio_clip
from media.synthetic import BLOCK, paint_index, read_index

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
AUDIO_STEP = 960
"""RTP ticks of one 20 ms Opus packet."""
CLIP_SECONDS = 2
FRAMES_PER_SLOT = 1024
"""The top field is slot * FRAMES_PER_SLOT + frame within the clip."""
MAX_SLOTS = (1 << 16) // FRAMES_PER_SLOT
ROOM_FIELD_ROW = 2 * BLOCK
"""The room marker is painted from this row (two block rows: value, then the 1010 pattern)."""
PICTURE_TOP = 4 * BLOCK
"""Noise and the moving bar start below the painted fields."""
NOISE_AMPLITUDE = 4
"""+- luma noise: the encoder spends the bitrate it is given, as on a camera's picture."""

IDENTITY = re.compile(r"^(?P<run>.+)-r(?P<room>\d+)-p(?P<slot>\d+)$")


def seat_identity(run: str, room_index: int, slot: int) -> str:
    return f"{run}-r{room_index}-p{slot}"


def parse_identity(identity: str) -> tuple[int, int] | None:
    """(room index, slot) of a load-test identity; None for anyone else."""
    match = IDENTITY.match(identity)
    if match is None:
        return None
    return int(match["room"]), int(match["slot"])


def paint_marked_frame(
    width: int, height: int, room_index: int, slot: int, frame: int, noise: np.ndarray | None
) -> av.VideoFrame:
    planes = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    luma = planes[:height]
    if noise is not None:
        luma[PICTURE_TOP:] = np.clip(128 + noise, 0, 255).astype(np.uint8)
    bar = (frame * 8) % max(1, width - 32)
    luma[PICTURE_TOP + BLOCK :, bar : bar + 32] = 200
    paint_index(luma, slot * FRAMES_PER_SLOT + frame)
    paint_index(luma[ROOM_FIELD_ROW:], room_index)
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def read_marks(luma: np.ndarray) -> tuple[int, int, int] | None:
    """(room index, slot, clip frame) painted in a decoded luma plane, or None."""
    top = read_index(luma)
    room = read_index(luma[ROOM_FIELD_ROW:])
    if top is None or room is None:
        return None
    return room, top // FRAMES_PER_SLOT, top % FRAMES_PER_SLOT


def encode_marked_clip(
    room_index: int,
    slot: int,
    *,
    codec: str = "h264",
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    bitrate: int = 500_000,
    seconds: int = CLIP_SECONDS,
) -> EncodedClip:
    """`seconds` of painted video for one publisher, a keyframe at the start of every second.

    H.264: constrained baseline, Annex-B with SPS/PPS before every keyframe (what WebRTC sends
    and aiortc's packetizer expects); VP8: libvpx realtime. One packet per frame, in order.
    """
    if not 0 <= slot < MAX_SLOTS or not 0 <= room_index < 1 << 16:
        raise ValueError(f"slot must be < {MAX_SLOTS} and the room index < 65536")
    if width < 16 * BLOCK or height < PICTURE_TOP + 4 * BLOCK:
        raise ValueError("the picture is too small for the painted fields")
    encoder = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, VIDEO_CLOCK)
    encoder.framerate = Fraction(fps)
    encoder.bit_rate = bitrate
    encoder.gop_size = fps
    if codec == "h264":
        encoder.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:repeat-headers=1",
        }
    else:
        encoder.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "kf-min-dist": str(fps),
            "kf-max-dist": str(fps),
        }
    rng = np.random.default_rng(room_index * MAX_SLOTS + slot)
    frames = seconds * fps
    ticks = VIDEO_CLOCK // fps
    packets: list[tuple[bytes, int, bool]] = []
    for index in range(frames):
        noise = rng.integers(
            -NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=(height - PICTURE_TOP, width)
        )
        frame = paint_marked_frame(width, height, room_index, slot, index, noise)
        frame.pts = index * ticks
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        packets += [(bytes(p), p.pts or 0, bool(p.is_keyframe)) for p in encoder.encode(frame)]
    packets += [(bytes(p), p.pts or 0, bool(p.is_keyframe)) for p in encoder.encode(None)]
    if len(packets) != frames or not packets[0][2]:
        raise RuntimeError(f"the {codec} encoder gave {len(packets)} packets for {frames} frames")
    mime_type = "video/H264" if codec == "h264" else "video/VP8"
    return EncodedClip("video", mime_type, VIDEO_CLOCK, packets, frames * ticks)


def encode_tone_clip() -> EncodedClip:
    """One second of a 440 Hz tone in 20 ms Opus packets."""
    return encode_audio_clip(1.0)


class ClipTrack(MediaStreamTrack):
    """Loops an encoded clip in real time; `recv()` returns `av.Packet`s for aiortc to packetize.

    pts advance by one frame (or 20 ms packet) per packet across loops, so the RTP timestamps
    run on without a jump and a receiver can count what is missing. A keyframe request (PLI
    from the server, routed here with media.aiortc_hooks.route_keyframe_requests) makes the
    next packet the next keyframe of the clip: the clip jumps ahead, decodable at once.
    """

    def __init__(self, clip: EncodedClip, step_ticks: int) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self.step_ticks = step_ticks
        self.sent = 0
        """Packets handed to the sender so far."""
        self.keyframe_requests = 0
        self._position = 0
        self._keyframe_wanted = False
        self._start: float | None = None
        self._time_base = Fraction(1, clip.clock_rate)
        self._period_s = step_ticks / clip.clock_rate

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._keyframe_wanted = True

    def _next_keyframe(self) -> int:
        packets = self.clip.packets
        for offset in range(len(packets)):
            position = (self._position + offset) % len(packets)
            if packets[position][2]:
                return position
        return self._position

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.sent * self._period_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            self._position = self._next_keyframe()
        data, _, _ = self.clip.packets[self._position]
        packet = av.Packet(data)
        packet.pts = packet.dts = self.sent * self.step_ticks
        packet.time_base = self._time_base
        self._position = (self._position + 1) % len(self.clip.packets)
        self.sent += 1
        return packet
