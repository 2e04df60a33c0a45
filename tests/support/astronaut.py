"""An astronaut camera with its frame index painted on the suit (blur tests, e2e checks)."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
from aiortc import MediaStreamTrack

from bench.blur import camera_frames, index_origin
from media.synthetic import paint_index, read_index


class AstronautTrack(MediaStreamTrack):
    """A camera: the astronaut with the frame index painted on her suit, paced at `fps`."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 15) -> None:
        super().__init__()
        self.fps = fps
        self.index = 0
        self._planes = camera_frames(width, height, 1, noise=0, painted=False)[0].to_ndarray()
        self._height = height
        self._origin = index_origin(width, height)
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.index / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        planes = self._planes.copy()
        row, column = self._origin
        paint_index(planes[: self._height][row:, column:], self.index)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = self.index * 90000 // self.fps
        frame.time_base = fractions.Fraction(1, 90000)
        self.index += 1
        return frame


def read_frame_index(frame: av.VideoFrame) -> int | None:
    row, column = index_origin(frame.width, frame.height)
    return read_index(frame.to_ndarray(format="gray")[row:, column:])
