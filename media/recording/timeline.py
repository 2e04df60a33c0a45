"""Placing each track's RTP timestamps on the recording's clock.

Each forwarded track's pts are zero-based per track and nothing relates them to other tracks
(aiortc does not expose the sender reports' NTP time). A track is anchored by wall clock:
`anchor = arrival - receive delay - pts / clock rate`, kept at the smallest value seen, so a
packet that happened to arrive late does not shift the track and the track never drifts later
than real time. `receive delay` is what aiortc's jitter buffer holds a frame before handing it
over: audio waits for 4 later packets (prefetch=4 at 20 ms), video for the first packet of the
next frame (one frame interval) — without it, audio would sit ~50 ms late against video.
"""

from __future__ import annotations

AUDIO_RECEIVE_DELAY_S = 0.080
"""aiortc 1.16 audio JitterBuffer(prefetch=4) x 20 ms Opus frames."""
VIDEO_RECEIVE_DELAY_S = 1 / 30
"""aiortc 1.16 video JitterBuffer releases a frame when the next one starts (30 fps sources)."""


def receive_delay_s(kind: str) -> float:
    return AUDIO_RECEIVE_DELAY_S if kind == "audio" else VIDEO_RECEIVE_DELAY_S


class TrackTimeline:
    """Maps one track's pts to seconds since the recording start."""

    def __init__(self, clock_rate: int, recording_start: float, receive_delay: float) -> None:
        self.clock_rate = clock_rate
        self._start = recording_start
        self._receive_delay = receive_delay
        self._anchor: float | None = None

    def place(self, pts: int, arrival: float) -> float:
        """Seconds since the recording start for a frame with `pts` that arrived at `arrival`."""
        media_time = pts / self.clock_rate
        candidate = arrival - self._receive_delay - media_time
        if self._anchor is None or candidate < self._anchor:
            self._anchor = candidate
        return self._anchor + media_time - self._start
