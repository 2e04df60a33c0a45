"""Benchmark worker: several subscribers in one process, counting frames without decoding them.

Run as `python -m bench.subscribers`; reads a `SubscriberConfig` line on stdin. Each subscriber
is a `ParloirClient` whose receivers get an `EncodedFrameTap` in place of their decoder queue:
complete encoded frames are counted and dropped, so sixteen subscribers cost no decoding. The
checking subscriber's video tap also passes every frame on to the decoder, and each decoded
frame is checked: size, painted index, where the moving bar is, order, and painted-to-decoded
latency. Answers `Ready` once every subscriber has its first video frame (or gave up), `Counts`
on each `Mark`, a `Report` on `Stop`, then leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from bench.messages import (
    COMMAND,
    ContentCheck,
    Counts,
    JoinResult,
    Mark,
    Ready,
    Report,
    SubscriberConfig,
    SubscriberSeat,
)
from bench.processes import describe_error, emit, serve_worker
from media import aiortc_hooks
from media.forwarding import EncodedFrameTap
from media.ice import configure_gathering
from media.synthetic import BLOCK, read_index
from signaling.client import ParloirClient, ReceivedTrack

log = logging.getLogger(__name__)

INDEX_MODULO = 1 << 16
"""The painted index has 16 bits."""
BAR_WIDTH = 32
BAR_TOP = BLOCK * 3
"""PaintedVideoTrack paints its bar from this row down, `BAR_WIDTH` wide at x = index*8 mod
(width - 32), luma 200 on a 128 background."""
LEAVE_TIMEOUT_S = 10.0


class PaintedVideoChecker:
    """Decodes nothing itself: reads the frames the receiver decoded and checks each one."""

    def __init__(self, config: SubscriberConfig) -> None:
        self.config = config
        self.check = ContentCheck()
        self.measuring = False
        """Latencies are kept only while the benchmark's window is open."""
        self._previous: int | None = None

    async def run(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.inspect(frame, time.monotonic())

    def inspect(self, frame: av.VideoFrame, received_at: float) -> None:
        check = self.check
        check.frames_decoded += 1
        if (frame.width, frame.height) != (self.config.width, self.config.height):
            check.wrong_size += 1
            return
        luma = frame.to_ndarray(format="gray")
        index = read_index(luma)
        if index is None:
            check.unindexed += 1
            return
        bar = (index * 8) % max(1, self.config.width - BAR_WIDTH)
        column = luma[BAR_TOP + 16 : BAR_TOP + 80, bar + 8 : bar + BAR_WIDTH - 8]
        if float(column.mean()) < 170:
            check.bar_misplaced += 1
        if self._previous is not None:
            step = (index - self._previous) % INDEX_MODULO
            if step == 0 or step > INDEX_MODULO // 2:
                check.out_of_order += 1
            else:
                check.skipped += step - 1
        self._previous = index
        frame_number = self._unwrap(index, received_at)
        painted_at = self.config.video_started_at + frame_number / self.config.fps
        latency_ms = round((received_at - painted_at) * 1000, 2)
        if check.first_frame_age_ms is None:
            check.first_frame_age_ms = latency_ms
        if self.measuring:
            check.latency_ms.append(latency_ms)

    def _unwrap(self, index: int, now: float) -> int:
        """The full frame number of a 16-bit index: the one painted closest before `now`."""
        expected = int((now - self.config.video_started_at) * self.config.fps)
        return index + round((expected - index) / INDEX_MODULO) * INDEX_MODULO


class SubscriberProbe:
    """One subscriber of the benchmark: joins, receives the publication, counts its frames."""

    def __init__(
        self, config: SubscriberConfig, seat: SubscriberSeat, checker: PaintedVideoChecker | None
    ) -> None:
        self.config = config
        self.seat = seat
        self.checker = checker
        self.client = ParloirClient(
            config.url,
            token=seat.token,
            room=config.room,
            name=f"bench-subscriber-{seat.index}",
            on_track=self._track_arrived,
        )
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.video_bytes = 0
        self.first_frame_at: dict[str, float] = {}
        self.joining_at: float | None = None
        self._first_video = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self) -> JoinResult:
        self.joining_at = time.monotonic()
        error = None
        try:
            await self.client.connect(timeout=self.config.first_frame_timeout_s)
            await asyncio.wait_for(self._first_video.wait(), self.config.first_frame_timeout_s)
        except Exception as exc:
            error = describe_error(exc)
        return JoinResult(
            index=self.seat.index,
            first_video_s=self._since_joining("video"),
            first_audio_s=self._since_joining("audio"),
            error=error,
        )

    def _since_joining(self, kind: str) -> float | None:
        at = self.first_frame_at.get(kind)
        if at is None or self.joining_at is None:
            return None
        return round(at - self.joining_at, 4)

    def _track_arrived(self, received: ReceivedTrack) -> None:
        # Called inside setRemoteDescription, before any media: the tap is in place in time.
        if received.publication_id != self.config.publication_id:
            return
        receiver = received.receiver
        original = aiortc_hooks.get_decoder_queue(receiver)
        kind = received.kind
        decode = kind == "video" and self.checker is not None

        def on_frame(codec: Any, encoded_frame: Any) -> None:
            self.frames[kind] += 1
            if kind == "video":
                self.video_bytes += len(encoded_frame.data)
            if kind not in self.first_frame_at:
                self.first_frame_at[kind] = time.monotonic()
                if kind == "video":
                    self._first_video.set()
            if decode:
                original.put((codec, encoded_frame))

        aiortc_hooks.swap_decoder_queue(receiver, EncodedFrameTap(original, on_frame))
        if decode and self.checker is not None:
            self._tasks.append(asyncio.ensure_future(self.checker.run(received.track)))

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.leave(), LEAVE_TIMEOUT_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def join_all(probes: list[SubscriberProbe], concurrency: int) -> list[JoinResult]:
    limit = asyncio.Semaphore(max(1, concurrency))

    async def join(probe: SubscriberProbe) -> JoinResult:
        async with limit:
            return await probe.join()

    return list(await asyncio.gather(*(join(p) for p in probes)))


def counts(probes: list[SubscriberProbe]) -> Counts:
    return Counts(
        at=time.monotonic(),
        video={p.seat.index: p.frames["video"] for p in probes},
        audio={p.seat.index: p.frames["audio"] for p in probes},
        video_bytes={p.seat.index: p.video_bytes for p in probes},
    )


async def subscribe(config: SubscriberConfig, commands: asyncio.StreamReader) -> None:
    checker = PaintedVideoChecker(config) if config.checker_index is not None else None
    probes = [
        SubscriberProbe(config, seat, checker if seat.index == config.checker_index else None)
        for seat in config.seats
    ]
    try:
        emit(Ready(joins=await join_all(probes, config.join_concurrency)))
        marks = 0
        while line := await commands.readline():
            command = COMMAND.validate_json(line)
            if isinstance(command, Mark):
                marks += 1
                if checker is not None:
                    checker.measuring = marks == 1
                emit(counts(probes))
            else:
                emit(Report(content=checker.check if checker is not None else None))
                break
    finally:
        await asyncio.gather(*(p.leave() for p in probes))


async def main() -> None:
    configure_gathering(["127.0.0.1"])
    await serve_worker(SubscriberConfig, subscribe)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
