"""A published track as the SFU offers it to subscribers: passthrough or decode/re-encode relay."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from media.forwarding import TrackForwarder


class PublishedSource(Protocol):
    kind: str
    forwards_encoded: bool
    """True when subscribers get the publisher's encoded frames (no encoder on the SFU)."""
    paused: bool
    """When True nothing is forwarded (force mute)."""

    def subscribe(self) -> MediaStreamTrack: ...

    def add_consumer(self, consumer: Any) -> None:
        """Also feed `consumer` (a recorder) with what subscribers get."""

    def unsubscribe(self, consumer: Any) -> None: ...

    def request_keyframe(self) -> None: ...

    async def stop(self) -> None: ...


class PassthroughSource(TrackForwarder):
    forwards_encoded = True


class RelaySource:
    """The decode-once, encode-per-subscriber baseline (aiortc's MediaRelay).

    Kept for the forwarding benchmark, which measures passthrough against it.
    """

    forwards_encoded = False
    paused = False  # not enforced in the benchmark baseline

    def __init__(self, track: MediaStreamTrack) -> None:
        self.kind: str = track.kind
        self._track = track
        self._relay = MediaRelay()
        self._subscribers: list[MediaStreamTrack] = []
        # MediaRelay only reads the decoded track once someone subscribes; until then aiortc's
        # decoder fills an unbounded queue (~14 MB/s measured) and the first subscriber gets
        # seconds-old frames. A sink that discards frames keeps it drained from the start.
        self._sink = asyncio.ensure_future(self._drain(self._relay.subscribe(track)))

    @staticmethod
    async def _drain(proxy: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await proxy.recv()

    def subscribe(self) -> MediaStreamTrack:
        proxy = self._relay.subscribe(self._track)
        self._subscribers.append(proxy)
        return proxy

    def request_keyframe(self) -> None:
        # Each subscriber's own encoder answers its PLI; nothing to ask upstream.
        return None

    def add_consumer(self, consumer: Any) -> None:
        raise NotImplementedError("the relay baseline has no encoded frames to hand out")

    def unsubscribe(self, consumer: Any) -> None:
        return None

    async def stop(self) -> None:
        self._sink.cancel()
        for proxy in self._subscribers:
            proxy.stop()
        self._subscribers.clear()


def make_source(
    forwarding: str, receiver: RTCRtpReceiver, track: MediaStreamTrack
) -> PublishedSource:
    if forwarding == "relay":
        return RelaySource(track)
    return PassthroughSource(receiver, track)
