"""Benchmark worker: one participant publishing painted 640x480@30 video and an Opus tone.

Run as `python -m bench.publisher`; reads a `PublisherConfig` line on stdin, answers
`Published` once frame 0 is painted, then `Counts` (frames painted) on each `Mark`, and leaves
on `Stop` or when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiortc.codecs.h264
import aiortc.codecs.vpx
import av
import numpy as np

from bench.messages import COMMAND, Counts, Mark, Published, PublisherConfig, Report
from bench.processes import emit, serve_worker
from media.ice import configure_gathering
from media.synthetic import BLOCK, PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient

START_TIMEOUT_S = 20.0


def pin_encoder_bitrate(bitrate: int) -> None:
    """Make aiortc's VP8 and H.264 encoders in this process run at `bitrate`, whatever REMB says.

    They start at their module's DEFAULT_BITRATE and follow REMB within MIN_BITRATE..MAX_BITRATE
    (VP8 0.25-1.5 Mbit/s, H.264 0.5-3 Mbit/s), all read at call time: pinning all three gives
    every run, codec and N the same forwarded bitrate. Only this benchmark publisher does this.
    """
    for module in (aiortc.codecs.vpx, aiortc.codecs.h264):
        for name in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE"):
            if not isinstance(getattr(module, name, None), int):
                raise RuntimeError(f"{module.__name__}.{name} is gone: cannot pin the bitrate")
            setattr(module, name, bitrate)


class TimedPaintedVideoTrack(PaintedVideoTrack):
    """Painted video that remembers when frame 0 was painted: frame i is due `i / fps` later,
    so a receiver that reads the index knows when its frame was made."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__(width, height, fps)
        self.started_at: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.started_at is None:
            self.started_at = time.monotonic()
        return await super().recv()


class TexturedPaintedVideoTrack(TimedPaintedVideoTrack):
    """Painted video with fresh sensor-like noise below the index rows in every frame.

    The plain painted picture is flat grey: VP8 codes it in about 35 kbit/s, a camera's
    picture takes the encoder's whole budget (aiortc: 0.25-1.5 Mbit/s VP8, 0.5-3 Mbit/s
    H.264, set by REMB). Forwarding cost grows with packets, so the benchmark sends what a
    camera would. The index rows stay clean and the noise is zero-mean, so the painted index
    and the moving bar still read back.
    """

    NOISE_FRAMES = 31
    """Distinct noise planes, cycled: a prime count, so no short repeat to predict from."""

    def __init__(self, width: int, height: int, fps: int, amplitude: int) -> None:
        super().__init__(width, height, fps)
        rng = np.random.default_rng(0)
        rows = height - BLOCK * 3
        self._noise = rng.integers(
            -amplitude, amplitude + 1, size=(self.NOISE_FRAMES, rows, width), dtype=np.int16
        )

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        planes = frame.to_ndarray()  # yuv420p: luma rows, then the chroma rows
        below = planes[BLOCK * 3 : self.height].astype(np.int16)
        below += self._noise[(self.index - 1) % self.NOISE_FRAMES]
        planes[BLOCK * 3 : self.height] = np.clip(below, 0, 255).astype(np.uint8)
        textured = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        textured.pts = frame.pts
        textured.time_base = frame.time_base
        return textured


class CountedToneAudioTrack(ToneAudioTrack):
    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self.frames += 1
        return frame


async def publish(config: PublisherConfig, commands: asyncio.StreamReader) -> None:
    if config.bitrate is not None:
        pin_encoder_bitrate(config.bitrate)
    client = ParloirClient(config.url, token=config.token, room=config.room, name="bench-publisher")
    video = (
        TexturedPaintedVideoTrack(config.width, config.height, config.fps, config.noise)
        if config.noise > 0
        else TimedPaintedVideoTrack(config.width, config.height, config.fps)
    )
    audio = CountedToneAudioTrack()
    try:
        await client.connect(timeout=START_TIMEOUT_S)
        publication = await client.publish(
            audio=audio, video=video, video_codec=config.codec, timeout=START_TIMEOUT_S
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while video.started_at is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the video sender never asked for a frame")
            await asyncio.sleep(0.02)
        emit(Published(publication_id=str(publication["id"]), video_started_at=video.started_at))
        while line := await commands.readline():
            command = COMMAND.validate_json(line)
            if isinstance(command, Mark):
                emit(Counts(at=time.monotonic(), video={0: video.index}, audio={0: audio.frames}))
            else:
                emit(Report(content=None))
                break
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.leave(), 10)


async def main() -> None:
    configure_gathering(["127.0.0.1"])
    await serve_worker(PublisherConfig, publish)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
