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

import av

from bench.messages import COMMAND, Counts, Failed, Mark, Published, PublisherConfig, Report
from bench.processes import describe_error, emit, open_commands
from media.ice import configure_gathering
from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient

START_TIMEOUT_S = 20.0


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


class CountedToneAudioTrack(ToneAudioTrack):
    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self.frames += 1
        return frame


async def publish(config: PublisherConfig, commands: asyncio.StreamReader) -> None:
    client = ParloirClient(config.url, token=config.token, room=config.room, name="bench-publisher")
    video = TimedPaintedVideoTrack(config.width, config.height, config.fps)
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
    commands = await open_commands()
    try:
        config = PublisherConfig.model_validate_json(await commands.readline())
        await publish(config, commands)
    except Exception as exc:
        emit(Failed(error=describe_error(exc)))
        raise


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
