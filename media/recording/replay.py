"""Pre-encoded clips replayed in real time, the way a `TrackForwarder` feeds its consumers.

For the recording benchmark and the crash test: a clip is encoded once (libx264 Annex-B with
SPS/PPS on every keyframe, as WebRTC sends it; Opus in 20 ms packets), then `ClipReplay` pushes
`av.Packet`s with RTP-clock pts on the event loop at their due time, looping, so the recorders
get exactly what a forwarded track gives them without an encoder or a peer connection running.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from media.synthetic import paint_index


@dataclass
class EncodedClip:
    """Encoded frames of one track, ready to replay."""

    kind: str
    """`audio` or `video`."""
    mime_type: str
    """`video/H264` or `audio/opus`."""
    clock_rate: int
    """RTP clock of `packets` pts."""
    packets: list[tuple[bytes, int, bool]]
    """(data, pts, keyframe) in order."""
    length_ticks: int
    """Clip length in clock ticks (the pts offset added at each loop)."""

    @property
    def bitrate(self) -> float:
        return sum(len(p[0]) for p in self.packets) * 8 / (self.length_ticks / self.clock_rate)


def encode_video_clip(
    seconds: float,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    bitrate: int = 1_000_000,
    luma: int = 128,
    chroma: tuple[int, int] = (128, 128),
    noise: bool = True,
    seed: int = 1,
    codec: str = "h264",
) -> EncodedClip:
    """A painted clip (frame index, moving bar, optional noise), GOP 1 s.

    `codec` "h264": baseline Annex-B with SPS/PPS on keyframes; "vp8": libvpx frames.
    """
    encoder = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    encoder.framerate = Fraction(fps)
    encoder.bit_rate = bitrate
    encoder.gop_size = fps
    if codec == "h264":
        encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "repeat-headers": "1",
        }
    else:
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(seed)
    noise_frames = [
        rng.integers(-24, 24, size=(height // 2, width // 2), dtype=np.int16) for _ in range(8)
    ]
    frames = int(seconds * fps)
    packets: list[tuple[bytes, int, bool]] = []
    for index in range(frames):
        planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
        y = planes[:height]
        y[:] = luma
        planes[height : height + height // 4] = chroma[0]
        planes[height + height // 4 :] = chroma[1]
        if noise:
            patch = (luma + noise_frames[index % len(noise_frames)]).clip(16, 235)
            y[height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2] = patch
        bar = (index * 8) % max(1, width - 32)
        y[height - 48 :, bar : bar + 32] = 220
        paint_index(y, index)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = round(index * 90000 / fps)
        frame.time_base = Fraction(1, 90000)
        packets += [(bytes(p), p.pts or 0, bool(p.is_keyframe)) for p in encoder.encode(frame)]
    packets += [(bytes(p), p.pts or 0, bool(p.is_keyframe)) for p in encoder.encode(None)]
    mime_type = "video/H264" if codec == "h264" else "video/VP8"
    return EncodedClip("video", mime_type, 90000, packets, round(frames * 90000 / fps))


def encode_audio_clip(seconds: float, frequency: float = 440.0) -> EncodedClip:
    """A sine in 20 ms stereo Opus packets (what aiortc and browsers send)."""
    rate = 48000
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "stereo", "s16"
    encoder.time_base = Fraction(1, rate)
    encoder.bit_rate = 64000
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=rate, frame_size=960)
    count = int(seconds * rate) // 960 * 960
    t = np.arange(count) / rate
    wave = (0.3 * 32767 * np.sin(2 * math.pi * frequency * t)).astype(np.int16)
    source = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
    source.sample_rate, source.pts = rate, 0
    raw: list[Any] = []
    for frame in resampler.resample(source):
        raw += encoder.encode(frame)
    raw += encoder.encode(None)
    # RTP timestamps: one 960-sample step per packet from 0 (the encoder's pre-skip dropped).
    packets = [(bytes(p), i * 960, True) for i, p in enumerate(raw[: count // 960])]
    return EncodedClip("audio", "audio/opus", rate, packets, count)


class ClipReplay:
    """Feeds a clip to consumers in real time on the event loop, looping; forwarder-shaped."""

    def __init__(self, clip: EncodedClip) -> None:
        self.clip = clip
        self.kind = clip.kind
        self.mime_type = clip.mime_type
        self._consumers: list[Any] = []
        self.keyframe_requests = 0
        self.frames = 0
        self._task: asyncio.Task[None] | None = None

    def add_consumer(self, consumer: Any) -> None:
        self._consumers.append(consumer)

    def unsubscribe(self, consumer: Any) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1  # the clip has a keyframe every second anyway

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        clip = self.clip
        time_base = Fraction(1, clip.clock_rate)
        origin = time.monotonic()
        loop = 0
        while True:
            offset = loop * clip.length_ticks
            for data, pts, keyframe in clip.packets:
                due = origin + (offset + pts) / clip.clock_rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                packet = av.Packet(data)
                packet.pts = packet.dts = offset + pts
                packet.time_base = time_base
                self.frames += 1
                for consumer in tuple(self._consumers):
                    consumer.push(packet, keyframe)
            loop += 1
