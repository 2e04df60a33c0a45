"""Real aiortc peers through a real `parloir serve` process: what subscribers decode."""

from __future__ import annotations

import asyncio
import time

import pytest

from media.synthetic import PaintedVideoTrack, ToneAudioTrack, read_frame_index
from signaling.client import ParloirClient
from signaling.permissions import Role
from tests.support.media_checks import (
    assert_painted_sequence,
    audio_frames,
    dominant_frequency,
    painted_indices,
)
from tests.support.server_process import ServerProcess


def sdp_video_codecs(sdp: str) -> set[str]:
    """Codec names of the video section(s) of an SDP (rtpmap lines), rtx excluded."""
    names: set[str] = set()
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            name = line.split()[1].split("/")[0]
            if name.lower() != "rtx":
                names.add(name)
    return names


async def join(
    server: ServerProcess, room: str, identity: str, role: Role = Role.PUBLISHER
) -> ParloirClient:
    client = ParloirClient(server.url, token=server.token(room, identity, role), room=room)
    await client.connect()
    return client


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_one_publisher_three_subscribers_decode_the_painted_frames(
    server: ServerProcess, codec: str
) -> None:
    publisher = await join(server, "lecture", "mentor")
    subscribers: list[ParloirClient] = []
    try:
        publication = await publisher.publish(
            audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 30), video_codec=codec
        )
        for n in range(3):
            subscribers.append(await join(server, "lecture", f"student-{n}", Role.SUBSCRIBER))

        async def check(subscriber: ParloirClient) -> None:
            video = await subscriber.wait_for_track(publication["id"], "video")
            audio = await subscriber.wait_for_track(publication["id"], "audio")
            indices = await painted_indices(video.track, 45)
            assert_painted_sequence(indices)
            assert sdp_video_codecs(subscriber.subscriber_pc.remoteDescription.sdp) == {codec}
            frames = await audio_frames(audio.track, 50)
            assert abs(dominant_frequency(frames) - 440) < 15

        await asyncio.gather(*(check(s) for s in subscribers))
        assert publisher.joined is not None
        room_codec = (await subscribers[0].wait_for_type("joined"))["room"]["codec"]
        assert room_codec == codec
    finally:
        await asyncio.gather(*(s.leave() for s in subscribers), publisher.leave())


async def test_subscriber_joining_late_gets_first_frame_within_1s(server: ServerProcess) -> None:
    publisher = await join(server, "defence", "student")
    late: ParloirClient | None = None
    try:
        publication = await publisher.publish(video=PaintedVideoTrack(320, 240, 30))
        # Long after the publisher's first keyframe: only a PLI can give the late joiner one.
        await asyncio.sleep(3)
        started = time.monotonic()
        late = await join(server, "defence", "jury", Role.SUBSCRIBER)
        video = await late.wait_for_track(publication["id"], "video")
        first = await asyncio.wait_for(video.track.recv(), 5)
        elapsed = time.monotonic() - started
        assert read_frame_index(first) is not None
        assert read_frame_index(first) > 60, "the late joiner got stale frames"
        assert elapsed < 1.0, f"first decoded frame after {elapsed:.2f}s"
    finally:
        if late is not None:
            await late.leave()
        await publisher.leave()


async def test_participant_publishing_after_others_joined_reaches_them(
    server: ServerProcess,
) -> None:
    """Renegotiation both ways: A and B join first, then each publishes; both receive."""
    a = await join(server, "pair", "a")
    b = await join(server, "pair", "b")
    try:
        pub_a = await a.publish(video=PaintedVideoTrack(320, 240, 30))
        pub_b = await b.publish(video=PaintedVideoTrack(320, 240, 30), audio=ToneAudioTrack())
        seen_by_b = await b.wait_for_track(pub_a["id"], "video")
        seen_by_a = await a.wait_for_track(pub_b["id"], "video")
        assert_painted_sequence(await painted_indices(seen_by_b.track, 20))
        assert_painted_sequence(await painted_indices(seen_by_a.track, 20))
        assert (pub_b["id"], "audio") in a.received
        # Screen share: a second video publication next to the camera, then stopped.
        screen = await a.publish(video=PaintedVideoTrack(640, 480, 5), video_type="screen")
        screen_track = await b.wait_for_track(screen["id"], "video")
        assert_painted_sequence(await painted_indices(screen_track.track, 5))
        event_start = len(b.events.messages)
        await a.unpublish(screen["id"])
        event = await b.wait_for(lambda m: m["type"] == "track-unpublished", start=event_start)
        assert event["publication_id"] == screen["id"]
        # The camera keeps flowing after the screen m-line went inactive.
        assert_painted_sequence(await painted_indices(seen_by_b.track, 10))
    finally:
        await asyncio.gather(a.leave(), b.leave())


async def test_relay_baseline_serves_fresh_frames_to_a_late_subscriber(tmp_path) -> None:
    """The decode+re-encode mode (benchmark baseline) drains the decoder from the start."""
    from tests.support.server_process import running_server

    with running_server(tmp_path, PARLOIR_FORWARDING="relay") as relay_server:
        publisher = await join(relay_server, "baseline", "pub")
        late: ParloirClient | None = None
        try:
            publication = await publisher.publish(video=PaintedVideoTrack(320, 240, 30))
            await asyncio.sleep(3)
            late = await join(relay_server, "baseline", "late", Role.SUBSCRIBER)
            video = await late.wait_for_track(publication["id"], "video")
            first = await asyncio.wait_for(video.track.recv(), 5)
            index = read_frame_index(first)
            # Frames painted ~3 s after the start, not the queue's oldest ones.
            assert index is not None and index > 60, index
        finally:
            await asyncio.gather(publisher.leave(), *(c.leave() for c in [late] if c))
