"""A client-side mirror of the server's per-socket rate limit."""

from __future__ import annotations

import time


class SendBudget:
    """A client-side mirror of the server's per-socket token bucket, kept a little below it, so
    the fuzzer's own probes are not what gets rate limited."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s * 0.8
        self.burst = burst * 0.8
        self.tokens = self.burst
        self.updated = time.monotonic()

    def available(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        return self.tokens

    def wait_for(self, needed: float) -> float:
        """Seconds until `needed` messages may be sent."""
        return max(0.0, (needed - self.available()) / self.rate_per_s)

    def spend(self, count: float) -> None:
        self.available()
        self.tokens -= count
