"""What one subscriber m-line sends: the track of whichever publication it carries right now.

aiortc never removes an m-line, and a stopped `RTCRtpSender` cannot start again. So a subscriber
m-line whose publication ended is kept, sending nothing, and carries the next publication of its
kind (`SubscriberPeer.subscribe`): its sender, SSRC and RTP sequence go on, and the SDP stops
growing with every publication the room ever saw (a screen share toggled 50 times).
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

MAX_STEP_S = 10
"""A carried track's timestamp moving further than this between two frames is a jump."""


class SlotTrack(MediaStreamTrack):
    """The sender's track for one m-line; `carry()` plugs a publication's track in, `release()`
    takes it out (the sender then waits, sending nothing). Ends only with `stop()`.

    Timestamps stay continuous across publications: the first frame of a newly carried track
    follows the last one sent by the wall-clock time in between, as a receiver's jitter buffer
    expects of one SSRC. So do they when the carried track's own timestamps jump (backwards, or
    further ahead than MAX_STEP_S): a publisher that restarts its timestamps on a reused m-line
    (aiortc's `replaceTrack` with a new track) reaches the forwarder as a jump of 2**32, because
    aiortc's receiver takes any step back for a wrap-around. (Encoded packets only: the relay
    baseline's decoded frames, shared by its subscribers, pass unchanged.)
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._carried: MediaStreamTrack | None = None
        self._changed = asyncio.Event()
        self._shift: int | None = None
        """Added to the pts of the carried track's frames (in its time base)."""
        self._last: tuple[Fraction, float] | None = None
        """Time of the last frame sent (seconds on the RTP clock) and when it was sent."""
        self._last_in: int | None = None
        """The carried track's pts of that frame (before `_shift`)."""

    @property
    def carried(self) -> MediaStreamTrack | None:
        return self._carried

    def carry(self, track: MediaStreamTrack) -> None:
        self.release()
        self._carried = track
        self._shift = None
        self._last_in = None
        self._changed.set()

    def release(self) -> None:
        """End the carried track (its publication or subscription ended)."""
        track, self._carried = self._carried, None
        if track is not None:
            track.stop()

    def stop(self) -> None:
        super().stop()
        self.release()
        self._changed.set()

    async def recv(self) -> av.Packet | av.frame.Frame:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            track = self._carried
            if track is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                frame = await track.recv()
            except MediaStreamError:
                if track is self._carried:
                    self._carried = None  # the publication ended by itself: wait for the next
                continue
            if track is self._carried:
                return self._continued(frame)

    def _continued(self, frame: av.Packet | av.frame.Frame) -> av.Packet | av.frame.Frame:
        pts, time_base = frame.pts, frame.time_base
        if pts is None or time_base is None:
            return frame
        if self._shift is None or (
            self._last_in is not None and not 0 < (pts - self._last_in) * time_base <= MAX_STEP_S
        ):
            self._shift = 0
            if self._last is not None and isinstance(frame, av.Packet):
                last_s, sent_at = self._last
                gap_s = Fraction(max(time.monotonic() - sent_at, 0.001)).limit_denominator(1000)
                self._shift = int((last_s + gap_s) / time_base) - pts
        self._last_in = pts
        if self._shift and isinstance(frame, av.Packet):
            # Subscribers share the forwarder's packet: the shifted one is a copy.
            pts += self._shift
            shifted = av.Packet(bytes(frame))
            shifted.pts = shifted.dts = pts
            shifted.time_base = time_base
            frame = shifted
        self._last = (Fraction(pts) * time_base, time.monotonic())
        return frame
