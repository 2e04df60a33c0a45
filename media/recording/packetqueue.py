"""The hand-off from the event loop to a recorder thread: bounded, never blocks the loop.

`push()` on the event loop copies the packet's bytes (the `av.Packet` is shared with the
subscribers, so the thread must not touch it) and appends it here. When the queue is full the
oldest *packet* is dropped and counted; control items (close a track, stop) are never dropped.
Each packet carries its track's sequence number, so the thread sees a gap and, for video, waits
for the next keyframe instead of writing or decoding across it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class QueuedPacket:
    """One encoded frame, copied off the event loop's packet."""

    track: Any
    """The recorder's per-track object the packet belongs to."""
    sequence: int
    """Per track, +1 for every packet queued: a jump means packets were dropped."""
    data: bytes
    """The encoded frame (H.264 Annex-B access unit, VP8 frame, Opus packet)."""
    pts: int
    """RTP-clock timestamp, zero-based per track source, as the forwarder gave it."""
    keyframe: bool
    """Whether decoding can start here."""
    time_s: float
    """Where the frame sits on the recording's clock (seconds since the recording start)."""
    epoch: int = 0
    """Which source of the track sent it (+1 at each resume after a gap): pts restart with it."""


class PacketQueue:
    """A bounded FIFO between one producer (the event loop) and one consumer thread."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0
        """Packets thrown away because the consumer thread fell behind."""
        self._items: deque[Any] = deque()
        self._packets = 0
        self._ready = threading.Condition(threading.Lock())

    def put_packet(self, item: QueuedPacket) -> QueuedPacket | None:
        """Append; if full, drop and return the oldest packet (never blocks)."""
        dropped = None
        with self._ready:
            if self._packets >= self.capacity:
                for index, queued in enumerate(self._items):
                    if isinstance(queued, QueuedPacket):
                        del self._items[index]
                        self._packets -= 1
                        self.dropped += 1
                        dropped = queued
                        break
            self._items.append(item)
            self._packets += 1
            self._ready.notify()
        return dropped

    def put_control(self, item: Any) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Any:
        """The next item, or None after `timeout` seconds with nothing queued."""
        with self._ready:
            if not self._items and not self._ready.wait(timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, QueuedPacket):
                self._packets -= 1
            return item

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)
