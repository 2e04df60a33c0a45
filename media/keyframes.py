"""Keyframe request policy: at most one PLI per interval per published track, none lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class KeyframeRequester:
    """Coalesces keyframe requests: the first goes out at once, later ones within the interval
    are merged into one sent when the interval ends (so a late joiner is never forgotten)."""

    def __init__(
        self,
        send: Callable[[], None],
        min_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_sent: float | None = None
        self._pending: asyncio.TimerHandle | None = None
        self.sent = 0
        """Requests actually sent upstream."""
        self.asked = 0
        """Requests received (from subscribers and the SFU itself)."""

    def request(self) -> None:
        self.asked += 1
        now = self._clock()
        if self._last_sent is None or now - self._last_sent >= self._min_interval_s:
            self._fire()
        elif self._pending is None:
            delay = self._min_interval_s - (now - self._last_sent)
            self._pending = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last_sent = self._clock()
        self.sent += 1
        self._send()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
