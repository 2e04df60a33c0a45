"""A bad network between one browser page and the server, for the connection-test verdict: a
UDP relay on loopback that drops packets at random and caps the rate (with a short queue, like
an access link), put in the media path by rewriting the ICE candidates of the signaling
messages (Playwright's WebSocket routing). tc netem would be simpler, but this machine's kernel
has no netem (nor prio) qdisc.

Every candidate a side announces is replaced by a relay port, so neither side ever learns the
other's real address: the browser reaches the server only through the relay, and the server
reaches the browser only through it too (it learns the relay's ports as peer-reflexive
candidates). One uplink and one downlink budget are shared by all the page's connections.
"""

from __future__ import annotations

import json
import random
import re
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# "candidate:... 1 udp 2122260223 127.0.0.1 54321 typ host ..." (in SDP after "a=").
CANDIDATE = re.compile(r"(candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ)", re.IGNORECASE)


@dataclass
class Link:
    """One direction of the access link: random loss, a rate cap, a queue of a few packets."""

    loss: float
    rate_bps: float
    queue_packets: int
    random: random.Random
    free_at: float = 0.0
    queued: int = 0
    sent: int = 0
    dropped_random: int = 0
    dropped_queue: int = 0

    def admit(self, size: int, now: float) -> float | None:
        """When the packet leaves, or None if it is lost."""
        if self.random.random() < self.loss:
            self.dropped_random += 1
            return None
        if self.queued >= self.queue_packets:
            self.dropped_queue += 1
            return None
        self.free_at = max(self.free_at, now) + size * 8 / self.rate_bps
        self.queued += 1
        return self.free_at


@dataclass
class Mapping:
    """A relay port shown in place of a real candidate: what arrives on `shown` goes to `target`
    from `inner`; what comes back on `inner` goes to whoever last sent to `shown`."""

    shown: socket.socket
    inner: socket.socket
    target: tuple[str, int]
    towards_target: Link
    towards_peer: Link
    peer: tuple[str, int] | None = None


@dataclass(order=True)
class _Departure:
    at: float
    seq: int
    sock: socket.socket = field(compare=False)
    data: bytes = field(compare=False)
    dest: tuple[str, int] = field(compare=False)
    link: Link = field(compare=False)


class ImpairedRelay:
    """Started on creation, in its own thread; `close()` stops it."""

    def __init__(
        self, *, loss: float, rate_kbit: float, queue_packets: int = 10, seed: int = 7
    ) -> None:
        rng = random.Random(seed)
        self.uplink = Link(loss, rate_kbit * 1000, queue_packets, rng)
        self.downlink = Link(loss, rate_kbit * 1000, queue_packets, rng)
        self._by_real_port: dict[tuple[str, int], Mapping] = {}
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._queue: deque[_Departure] = deque()
        self._seq = 0
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="impaired-relay", daemon=True)
        self._thread.start()

    # ---- candidates ----------------------------------------------------------------------

    def relay_port(self, real_port: int, *, browser_side: bool) -> int:
        """The relay port to announce instead of 127.0.0.1:`real_port`."""
        key = ("browser" if browser_side else "server", real_port)
        with self._lock:
            mapping = self._by_real_port.get(key)
            if mapping is None:
                shown, inner = _udp_socket(), _udp_socket()
                # Traffic arriving on `shown` flows towards the candidate's owner.
                towards_owner, towards_other = (
                    (self.downlink, self.uplink) if browser_side else (self.uplink, self.downlink)
                )
                target = ("127.0.0.1", real_port)
                mapping = Mapping(shown, inner, target, towards_owner, towards_other)
                self._by_real_port[key] = mapping
                self._selector.register(shown, selectors.EVENT_READ, (mapping, "shown"))
                self._selector.register(inner, selectors.EVENT_READ, (mapping, "inner"))
            return int(mapping.shown.getsockname()[1])

    def rewrite(self, text: str, *, browser_side: bool) -> str:
        """Replace every loopback UDP candidate's port in an SDP or candidate string."""
        return CANDIDATE.sub(
            lambda m: (
                f"{m.group(1)}{self.relay_port(int(m.group(2)), browser_side=browser_side)}"
                f"{m.group(3)}"
            ),
            text,
        )

    def rewrite_message(self, raw: str | bytes, *, from_browser: bool) -> str | bytes:
        """A signaling frame with its candidates (SDP or trickled) pointed at the relay."""
        if not isinstance(raw, str):
            return raw
        try:
            message = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(message, dict):
            return raw
        if isinstance(message.get("sdp"), str):
            message["sdp"] = self.rewrite(message["sdp"], browser_side=from_browser)
        if message.get("type") == "ice" and isinstance(message.get("candidate"), str):
            message["candidate"] = self.rewrite(message["candidate"], browser_side=from_browser)
        return json.dumps(message)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "sent": link.sent,
                "dropped_random": link.dropped_random,
                "dropped_queue": link.dropped_queue,
            }
            for name, link in (("uplink", self.uplink), ("downlink", self.downlink))
        }

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        for mapping in self._by_real_port.values():
            mapping.shown.close()
            mapping.inner.close()
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    # ---- the relay thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            now = time.monotonic()
            timeout = max(0.0, self._queue[0].at - now) if self._queue else 0.05
            for key, _ in self._selector.select(timeout=min(timeout, 0.05)):
                if key.data is None:
                    self._wake_r.recv(64)
                    continue
                mapping, which = key.data
                try:
                    data, source = key.fileobj.recvfrom(65536)  # type: ignore[union-attr]
                except OSError:
                    continue
                if which == "shown":
                    mapping.peer = source
                    self._enqueue(mapping.inner, data, mapping.target, mapping.towards_target)
                elif mapping.peer is not None:
                    self._enqueue(mapping.shown, data, mapping.peer, mapping.towards_peer)
            now = time.monotonic()
            while self._queue and self._queue[0].at <= now:
                departure = self._queue.popleft()
                departure.link.queued -= 1
                departure.link.sent += 1
                try:
                    departure.sock.sendto(departure.data, departure.dest)
                except OSError:
                    pass

    def _enqueue(self, sock: socket.socket, data: bytes, dest: tuple[str, int], link: Link) -> None:
        at = link.admit(len(data) + 28, time.monotonic())  # + IP and UDP headers
        if at is None:
            return
        self._seq += 1
        departure = _Departure(at, self._seq, sock, data, dest, link)
        # Departures of one link are in order; the two links interleave: keep the deque sorted.
        index = len(self._queue)
        while index > 0 and self._queue[index - 1].at > at:
            index -= 1
        self._queue.insert(index, departure)


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def impair_page(page: Any, relay: ImpairedRelay) -> None:
    """Route the page's signaling socket through `relay`'s candidate rewriting."""

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(
            lambda message: server.send(relay.rewrite_message(message, from_browser=True))
        )
        server.on_message(
            lambda message: ws.send(relay.rewrite_message(message, from_browser=False))
        )

    await page.route_web_socket(re.compile(r"/rtc$"), route)
