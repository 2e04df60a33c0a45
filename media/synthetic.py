"""Synthetic media with checkable content: a frame index painted into the video, a sine tone.

Used by tests, `parloir bench` and load tools: a receiver decodes a frame and reads back which
frame it is, so "the right content arrived" is checked, not just "bytes arrived".
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import AUDIO_PTIME, VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

INDEX_BITS = 16
BLOCK = 16
"""Side of one painted bit, in pixels; survives lossy coding at low bitrates."""
MARKER_ROW = 1
"""Second block row carries the pattern 1010…, telling a painted frame from any other."""


def paint_index(luma: np.ndarray, index: int) -> None:
    """Write `index` (16 bits) as black/white blocks in the top rows of a luma plane."""
    for bit in range(INDEX_BITS):
        value = 235 if (index >> bit) & 1 else 16
        luma[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
        marker = 235 if bit % 2 == 0 else 16
        luma[BLOCK * MARKER_ROW : BLOCK * (MARKER_ROW + 1), bit * BLOCK : (bit + 1) * BLOCK] = (
            marker
        )


def read_index(luma: np.ndarray) -> int | None:
    """The painted index of a decoded luma plane, or None if the frame carries no index."""
    if luma.shape[0] < BLOCK * 2 or luma.shape[1] < BLOCK * INDEX_BITS:
        return None
    centre = slice(BLOCK // 4, BLOCK - BLOCK // 4)

    def bit_at(row: int, bit: int) -> int:
        block = luma[row * BLOCK : (row + 1) * BLOCK, bit * BLOCK : (bit + 1) * BLOCK]
        return 1 if float(block[centre, centre].mean()) > 128 else 0

    if any(bit_at(MARKER_ROW, bit) != (1 - bit % 2) for bit in range(INDEX_BITS)):
        return None
    return sum(bit_at(0, bit) << bit for bit in range(INDEX_BITS))


def read_frame_index(frame: av.VideoFrame) -> int | None:
    return read_index(frame.to_ndarray(format="gray"))


class PaintedVideoTrack(MediaStreamTrack):
    """Video frames with their index painted in, a moving bar below, paced at `fps`."""

    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 480, fps: int = 30, first_index: int = 0
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.index = 0
        """Frames produced so far."""
        self.first_index = first_index
        """Painted into the first frame (then +1 per frame): tells one track from another."""
        self._start: float | None = None
        self._background = np.full((height * 3 // 2, width), 128, dtype=np.uint8)

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.index / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        plane = self._background.copy()
        luma = plane[: self.height]
        bar = (self.index * 8) % max(1, self.width - 32)
        luma[BLOCK * 3 :, bar : bar + 32] = 200
        paint_index(luma, (self.first_index + self.index) & 0xFFFF)
        frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
        frame.pts = int(self.index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.index += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz sine, 20 ms frames of 48 kHz mono s16, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, sample_rate: int = 48000) -> None:
        super().__init__()
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.samples = int(AUDIO_PTIME * sample_rate)
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pts / self.sample_rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(self.samples) + self._pts) / self.sample_rate
        wave = (0.3 * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._pts += self.samples
        return frame
