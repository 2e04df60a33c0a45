"""Person segmentation for background blur: mediapipe's selfie segmentation model.

The model files ship inside the `mediapipe==0.10.21` wheel
(`mediapipe/modules/selfie_segmentation/*.tflite`); nothing is downloaded at run time. They are
run through the Tasks API `ImageSegmenter` in VIDEO mode. Two variants exist: a square one
(256x256 input) and a landscape one (256x144 input, about half the cost); landscape and 4:3
cameras use the landscape one (see LANDSCAPE_ASPECT). Measured here (2 vCPU): 4.4-5.1 ms and
2.3-2.8 ms of CPU per call, run on mediapipe's own graph threads while the calling thread
waits without the GIL.

Importing mediapipe costs about 0.7 s of GIL-holding Python once per process, so it is
imported lazily: call `ensure_blur_available()` at server start-up (before serving) to pay it
up front and to learn whether blur can be offered at all.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"
MODEL_DIR = ("modules", "selfie_segmentation")


class BlurUnavailable(RuntimeError):
    """Background blur cannot run in this process; `reason` is safe to show a participant."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SegmentationModel:
    """One of the two selfie segmentation variants bundled with mediapipe."""

    file_name: str
    """File under mediapipe/modules/selfie_segmentation/."""
    width: int
    """Input width the model expects (frames are resized to it before inference)."""
    height: int
    """Input height the model expects."""


SQUARE = SegmentationModel("selfie_segmentation.tflite", 256, 256)
LANDSCAPE = SegmentationModel("selfie_segmentation_landscape.tflite", 256, 144)
LANDSCAPE_ASPECT = 1.2
"""Frames at least this wide for their height use the landscape model: 16:9 and 4:3 too. On a
4:3 astronaut frame it covered 98.5 % of the person region and 0.2 % of the background region
(square model: 97.7 % and 0 %) for 2.4 ms instead of 4.5 ms; portrait and square frames use
the square model."""


def blur_installed() -> bool:
    """Cheap check (no import): the bundled models are where mediapipe ships them."""
    try:
        model_path(SQUARE)
        model_path(LANDSCAPE)
    except BlurUnavailable:
        return False
    return True


def model_for(width: int, height: int) -> SegmentationModel:
    return LANDSCAPE if width >= LANDSCAPE_ASPECT * height else SQUARE


def model_path(model: SegmentationModel) -> Path:
    """Where the installed mediapipe package keeps `model` (without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise BlurUnavailable(f"mediapipe=={MEDIAPIPE_VERSION} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MODEL_DIR, model.file_name)
    if not path.is_file():
        raise BlurUnavailable(f"the selfie segmentation model is missing from mediapipe ({path})")
    return path


class SelfieSegmenter:
    """Person probability per pixel for small RGB frames. Not thread-safe: one per worker.

    `segment()` takes an RGB uint8 image of exactly the model's input size and returns a float32
    mask of the same size, 1.0 on the person.
    """

    def __init__(self, model: SegmentationModel = SQUARE) -> None:
        self.model = model
        path = model_path(model)
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except Exception as exc:  # ImportError, or a broken native library under it
            raise BlurUnavailable(f"mediapipe does not import: {exc}") from exc
        self._mp: Any = mp
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO,
            output_confidence_masks=True,
            output_category_mask=False,
        )
        try:
            self._segmenter: Any = vision.ImageSegmenter.create_from_options(options)
        except Exception as exc:
            raise BlurUnavailable(f"the selfie segmentation model does not load: {exc}") from exc
        self._timestamp_ms = 0

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        expected = (self.model.height, self.model.width, 3)
        if rgb.shape != expected or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB {expected}, got {rgb.dtype} {rgb.shape}")
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        # VIDEO mode wants strictly increasing timestamps; dropped frames make real ones useless.
        self._timestamp_ms += 1
        result = self._segmenter.segment_for_video(image, self._timestamp_ms)
        # numpy_view() points into mediapipe's buffer, which the next call reuses.
        return np.array(result.confidence_masks[0].numpy_view(), dtype=np.float32, copy=True)

    def close(self) -> None:
        self._segmenter.close()


_availability_lock = threading.Lock()
_availability: BlurUnavailable | None | bool = False
"""False: not checked yet; None: available; an exception: why not."""


def ensure_blur_available() -> None:
    """Raise BlurUnavailable unless the model loads and runs here. Blocking (about 1 s the first
    time, for the mediapipe import): call it at start-up or through `asyncio.to_thread`. The
    answer is remembered for the life of the process."""
    global _availability
    with _availability_lock:
        if _availability is False:
            try:
                try:
                    import media.blur_processor  # noqa: F401  (OpenCV, as the worker needs it)
                except ImportError as exc:
                    raise BlurUnavailable(f"OpenCV does not import: {exc}") from exc
                for model in (SQUARE, LANDSCAPE):
                    segmenter = SelfieSegmenter(model)
                    try:
                        segmenter.segment(np.zeros((model.height, model.width, 3), np.uint8))
                    finally:
                        segmenter.close()
                _availability = None
            except BlurUnavailable as exc:
                log.warning("background blur unavailable: %s", exc.reason)
                _availability = exc
            except Exception as exc:  # anything else the native code throws
                log.warning("background blur unavailable", exc_info=True)
                _availability = BlurUnavailable(f"segmentation failed: {exc}")
        if isinstance(_availability, BlurUnavailable):
            raise BlurUnavailable(_availability.reason)
