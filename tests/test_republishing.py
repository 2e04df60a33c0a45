"""A publication ended and started again and again (a screen share toggled through a defence):
the m-lines of ended publications carry the next ones, so nothing grows, and each new share
reaches the viewer. Real aiortc peers through a real `parloir serve` process."""

from __future__ import annotations

import asyncio
import time

import av
from aiortc import MediaStreamTrack

from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_frame_index
from signaling.client import ParloirClient
from tests.support.server_process import ServerProcess

TOGGLES = 50
INDEX_STRIDE = 1000
"""Share n paints frame indices from n * INDEX_STRIDE: the viewer can tell which share it sees."""


def m_lines(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("m="))


async def painted_index(track: MediaStreamTrack, timeout_s: float) -> int | None:
    frame = await asyncio.wait_for(track.recv(), timeout_s)
    assert isinstance(frame, av.VideoFrame)
    return read_frame_index(frame)


async def first_frame_of_share(track: MediaStreamTrack, share: int, timeout_s: float) -> float:
    """Seconds until the viewer decodes a frame of share `share` (frames of earlier shares still
    queued are skipped); then the next frames must be of that share too, in order."""
    started = time.monotonic()
    wanted = range(share * INDEX_STRIDE, (share + 1) * INDEX_STRIDE)
    while True:
        remaining = timeout_s - (time.monotonic() - started)
        assert remaining > 0, f"share {share} never reached the viewer"
        try:
            index = await painted_index(track, remaining)
        except TimeoutError:
            raise AssertionError(f"share {share} never reached the viewer") from None
        if index in wanted:
            break
    arrived_after = time.monotonic() - started
    following = [await painted_index(track, 5) for _ in range(3)]
    readable = [i for i in following if i is not None]
    assert readable and all(i in wanted for i in readable), (share, index, following)
    assert readable == sorted(readable), following
    return arrived_after


async def test_screen_share_toggled_50_times_reuses_m_lines_and_each_share_is_seen(
    server: ServerProcess,
) -> None:
    room = "defence-toggles"
    viewer = ParloirClient(server.url, token=server.token(room, "jury"), room=room)
    sharer = ParloirClient(server.url, token=server.token(room, "student"), room=room)
    await viewer.connect()
    await sharer.connect()
    delays: list[float] = []
    try:
        for share in range(TOGGLES):
            screen = PaintedVideoTrack(320, 240, 15, first_index=share * INDEX_STRIDE)
            publication = await sharer.publish(
                audio=ToneAudioTrack(), video=screen, video_type="screen"
            )
            received = await viewer.wait_for_track(publication["id"], "video", timeout=15)
            delays.append(await first_frame_of_share(received.track, share, timeout_s=10))
            await sharer.unpublish(publication["id"])
        assert sharer.publisher_pc is not None and viewer.subscriber_pc.remoteDescription
        publisher_lines = m_lines(sharer.publisher_pc.localDescription.sdp)
        subscriber_lines = m_lines(viewer.subscriber_pc.remoteDescription.sdp)
        problems = [m for m in viewer.events.messages if m["type"] in ("error", "socket-closed")]
    finally:
        await sharer.leave()
        await viewer.leave()
    assert problems == []
    # One audio and one video m-line serve all 50 shares (the viewer's also has the chat one);
    # an m-line per publication ever made would be 100 on each side.
    assert publisher_lines == 2
    assert subscriber_lines <= 5, f"the viewer's SDP has {subscriber_lines} m-lines"
    assert max(delays) < 3.0, f"a share took {max(delays):.1f} s to show: {delays}"
