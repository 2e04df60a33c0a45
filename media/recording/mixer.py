"""Audio of every participant on the recording's clock, mixed into one mono signal.

Each audio track writes its decoded samples into an `AudioTimeline` at the sample position its
timestamps map to; the compositor reads the same span from every timeline and sums them.
Missing audio (late, lost, not yet started) reads as silence; audio arriving after its span
was mixed is dropped and counted.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

SAMPLE_RATE = 48000
SNAP_SAMPLES = 240
"""A frame starting within 5 ms of where the previous one ended is taken as contiguous
(the track's anchor can move by a few ms early on); larger jumps are real gaps or overlaps."""


class AudioTimeline:
    """Decoded mono float32 samples of one track, by absolute sample index (thread-safe)."""

    def __init__(self) -> None:
        self._chunks: deque[tuple[int, np.ndarray]] = deque()
        self._lock = threading.Lock()
        self._next: int | None = None
        self._read_until = 0
        self.late_samples = 0
        """Samples that arrived after their span had been mixed."""

    def write(self, start: int, samples: np.ndarray) -> None:
        with self._lock:
            if self._next is not None and abs(start - self._next) <= SNAP_SAMPLES:
                start = self._next
            if self._next is not None and start < self._next:
                samples = samples[self._next - start :]  # overlap: keep what is there
                start = self._next
            if start < self._read_until:
                cut = min(len(samples), self._read_until - start)
                self.late_samples += cut
                samples = samples[cut:]
                start += cut
            if len(samples) == 0:
                return
            self._chunks.append((start, samples))
            self._next = start + len(samples)

    def read(self, start: int, stop: int) -> np.ndarray | None:
        """Samples [start, stop) (zeros where none), or None if the span is silent."""
        out = None
        with self._lock:
            self._read_until = max(self._read_until, stop)
            while self._chunks:
                chunk_start, samples = self._chunks[0]
                chunk_stop = chunk_start + len(samples)
                if chunk_start >= stop:
                    break
                lo, hi = max(start, chunk_start), min(stop, chunk_stop)
                if hi > lo:
                    if out is None:
                        out = np.zeros(stop - start, dtype=np.float32)
                    out[lo - start : hi - start] = samples[lo - chunk_start : hi - chunk_start]
                if chunk_stop <= stop:
                    self._chunks.popleft()
                else:
                    break
        return out


def mix(spans: list[np.ndarray | None], length: int) -> np.ndarray:
    """Sum the tracks' spans; a sum beyond full scale is limited, not wrapped."""
    out = np.zeros(length, dtype=np.float32)
    for span in spans:
        if span is not None:
            out += span
    np.clip(out, -1.0, 1.0, out=out)
    return out
