"""Where each publication goes in a composed recording (pure functions, no media).

Cameras share the canvas in the grid that shows them biggest. When a screen is shared, the
most recently started screen takes the large area and everything else (cameras, other screens)
goes into a strip beside it — on the right of a landscape canvas, below a portrait one. Every
tile has a band at its bottom for the participant's name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RESOLUTIONS: dict[str, tuple[int, int]] = {
    "640x480": (640, 480),
    "1280x720": (1280, 720),
    "1920x1080": (1920, 1080),
    "480x640": (480, 640),
    "720x1280": (720, 1280),
    "1080x1920": (1080, 1920),
}
"""The sizes the platform offers (Vonage archive resolutions, landscape and portrait)."""


@dataclass(frozen=True)
class Rect:
    """A rectangle on the canvas, in pixels; x, y, width and height are even (chroma-aligned)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


@dataclass(frozen=True)
class TileSpec:
    """One publication to show."""

    key: str
    """The publication id."""
    name: str
    """Participant name, drawn under the tile."""
    screen: bool = False
    """A screen share (candidate for the large area)."""


@dataclass(frozen=True)
class Tile:
    """Where one publication is drawn."""

    key: str
    """The publication id."""
    name: str
    """The name drawn in `label`."""
    cell: Rect
    """The whole tile."""
    video: Rect
    """Where the picture is fitted (keeping its aspect ratio)."""
    label: Rect
    """The name band under the picture."""
    large: bool = False
    """The screen share shown large."""


@dataclass(frozen=True)
class LayoutOptions:
    """Tunable proportions of the composed layout."""

    strip_fraction: float = 0.22
    """Share of the canvas width (landscape) or height (portrait) the cameras keep beside a
    screen share."""
    gap: int = 4
    """Pixels between tiles."""
    label_fraction: float = 0.12
    """Height of the name band, as a share of the tile height."""
    label_min: int = 14
    """Smallest name band, pixels."""
    label_max: int = 40
    """Largest name band, pixels."""
    camera_aspect: float = 4 / 3
    """Assumed picture shape when choosing the grid."""


def _even(value: float) -> int:
    return int(value) // 2 * 2


def best_grid(count: int, width: int, height: int, aspect: float) -> tuple[int, int]:
    """(columns, rows) that show `count` pictures of `aspect` biggest inside width x height."""
    best, best_area = (1, max(count, 1)), -1.0
    for columns in range(1, max(count, 1) + 1):
        rows = math.ceil(count / columns)
        cell_w, cell_h = width / columns, height / rows
        shown_w = min(cell_w, cell_h * aspect)
        area = shown_w * shown_w / aspect
        if area > best_area + 1e-6:
            best, best_area = (columns, rows), area
    return best


def _grid(area: Rect, specs: Sequence[TileSpec], options: LayoutOptions) -> list[Tile]:
    if not specs:
        return []
    columns, rows = best_grid(len(specs), area.width, area.height, options.camera_aspect)
    gap = options.gap
    cell_w = (area.width - gap * (columns - 1)) / columns
    cell_h = (area.height - gap * (rows - 1)) / rows
    tiles = []
    for index, spec in enumerate(specs):
        row, column = divmod(index, columns)
        in_row = min(columns, len(specs) - row * columns)
        # Centre an incomplete last row.
        shift = (columns - in_row) * (cell_w + gap) / 2
        x = area.x + shift + column * (cell_w + gap)
        y = area.y + row * (cell_h + gap)
        tiles.append(_tile(spec, x, y, cell_w, cell_h, options))
    return tiles


def _tile(
    spec: TileSpec,
    x: float,
    y: float,
    w: float,
    h: float,
    options: LayoutOptions,
    large: bool = False,
) -> Tile:
    cell = Rect(_even(x), _even(y), max(2, _even(w)), max(4, _even(h)))
    wanted = cell.height * options.label_fraction
    band = _even(min(options.label_max, max(options.label_min, wanted)))
    band = min(band, cell.height // 2 // 2 * 2)
    video = Rect(cell.x, cell.y, cell.width, cell.height - band)
    label = Rect(cell.x, cell.y + cell.height - band, cell.width, band)
    return Tile(spec.key, spec.name, cell, video, label, large)


def compose_layout(
    width: int, height: int, specs: Sequence[TileSpec], options: LayoutOptions | None = None
) -> list[Tile]:
    """The tiles for `specs` (in the order they joined) on a width x height canvas."""
    options = options or LayoutOptions()
    canvas = Rect(0, 0, width, height)
    screens = [s for s in specs if s.screen]
    if not screens:
        return _grid(canvas, specs, options)
    large_spec = screens[-1]
    others = [s for s in specs if s is not large_spec]
    if not others:
        return [_tile(large_spec, 0, 0, width, height, options, large=True)]
    gap = options.gap
    if width >= height:
        strip = _even(width * options.strip_fraction)
        large = _tile(large_spec, 0, 0, width - strip - gap, height, options, large=True)
        strip_area = Rect(width - strip, 0, strip, height)
    else:
        strip = _even(height * options.strip_fraction)
        large = _tile(large_spec, 0, 0, width, height - strip - gap, options, large=True)
        strip_area = Rect(0, height - strip, width, strip)
    return [large, *_grid(strip_area, others, options)]


def fit(source_width: int, source_height: int, area: Rect) -> Rect:
    """The largest rectangle of the source's shape centred in `area` (even-aligned)."""
    if source_width <= 0 or source_height <= 0:
        return area
    scale = min(area.width / source_width, area.height / source_height)
    w = max(2, _even(source_width * scale))
    h = max(2, _even(source_height * scale))
    return Rect(area.x + _even((area.width - w) / 2), area.y + _even((area.height - h) / 2), w, h)
