"""Drawing a composed frame straight in YUV 4:2:0 (no RGB round trip): pictures and name bands."""

from __future__ import annotations

import logging
from functools import lru_cache

import av
import numpy as np

from media.recording.layout import Rect, fit

BLACK_Y, NEUTRAL_C = 16, 128
TEXT_Y = 235


class Canvas:
    """One output picture as a single yuv420p buffer (the layout `av.VideoFrame` takes)."""

    def __init__(self, width: int, height: int) -> None:
        if width % 4 or height % 4:
            raise ValueError(f"canvas {width}x{height}: sides must be multiples of 4")
        self.width, self.height = width, height
        self.buffer = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self.y = self.buffer[:height]
        quarter = height // 4
        self.u = self.buffer[height : height + quarter].reshape(height // 2, width // 2)
        self.v = self.buffer[height + quarter :].reshape(height // 2, width // 2)
        self.clear()

    def clear(self) -> None:
        self.y[:] = BLACK_Y
        self.u[:] = NEUTRAL_C
        self.v[:] = NEUTRAL_C

    def paste(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], at: Rect) -> None:
        y, u, v = planes
        self.y[at.y : at.y + at.height, at.x : at.x + at.width] = y
        cy, cx = at.y // 2, at.x // 2
        self.u[cy : cy + at.height // 2, cx : cx + at.width // 2] = u
        self.v[cy : cy + at.height // 2, cx : cx + at.width // 2] = v

    def paste_luma(self, luma: np.ndarray, at: Rect) -> None:
        """A grey-only block (name bands): chroma set neutral."""
        self.y[at.y : at.y + at.height, at.x : at.x + at.width] = luma
        cy, cx = at.y // 2, at.x // 2
        self.u[cy : cy + at.height // 2, cx : cx + at.width // 2] = NEUTRAL_C
        self.v[cy : cy + at.height // 2, cx : cx + at.width // 2] = NEUTRAL_C

    def to_frame(self, pts: int) -> av.VideoFrame:
        frame = av.VideoFrame.from_ndarray(self.buffer, format="yuv420p")
        frame.pts = pts
        return frame


def scaled_planes(
    frame: av.VideoFrame, area: Rect
) -> tuple[Rect, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The frame fitted into `area` (aspect kept): where it goes and its Y, U, V planes."""
    target = fit(frame.width, frame.height, area)
    scaled = frame.reformat(width=target.width, height=target.height, format="yuv420p")
    planes = tuple(_plane(scaled, i) for i in range(3))
    return target, planes  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _warn_no_pillow() -> None:
    logging.getLogger(__name__).warning("Pillow is not installed: composed tiles get no names")


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    data = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return data[: plane.height, : plane.width]


@lru_cache(maxsize=256)
def name_band(name: str, width: int, height: int) -> np.ndarray:
    """Luma of a name band: the name in white, centred, on black; cut with … if too long.

    Without Pillow the band stays black (logged once): a recording never fails over a label.
    """
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        _warn_no_pillow()
        return np.full((height, width), BLACK_Y, dtype=np.uint8)
    image = Image.new("L", (width, height), BLACK_Y)
    size = max(8, int(height * 0.72))
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    text = name
    while text and draw.textlength(text, font=font) > width - 4:
        text = text[:-2] + "…" if len(text) > 2 else ""
    if text:
        draw.text((width / 2, height / 2), text, fill=TEXT_Y, font=font, anchor="mm")
    return np.asarray(image, dtype=np.uint8)
