"""The SFU running in this process: no decoding on forwarded tracks, no leaks, clean drops."""

from __future__ import annotations

import asyncio
import gc
import random
from collections import Counter
from typing import Any

import aiohttp
import aiortc.rtcrtpreceiver
import av
import pytest
from aiortc import RTCPeerConnection

import signaling.participant
from media import aiortc_hooks
from media.forwarding import TrackForwarder
from media.peers import PEER_CONNECTIONS
from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling.client import ParloirClient, ReceivedTrack, ServerError
from signaling.permissions import Role
from tests.conftest import InProcessServer


class FrameCounter:
    """Counts encoded frames of a received track without decoding them."""

    def __init__(self) -> None:
        self.frames = 0
        self.keyframes = 0

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        self.frames += 1
        self.keyframes += int(keyframe)


def tapping_client(
    server: InProcessServer, room: str, identity: str, role: Role
) -> tuple[ParloirClient, dict[tuple[str, str], FrameCounter]]:
    """A client whose received tracks are counted, never decoded: the tap goes in as each track
    arrives, before its receiver starts."""
    counters: dict[tuple[str, str], FrameCounter] = {}
    client: ParloirClient

    def on_track(received: ReceivedTrack) -> None:
        receiver = received.receiver
        counter = counters[(received.publication_id, received.kind)] = FrameCounter()
        TrackForwarder(receiver, received.track).add_consumer(counter)

    client = ParloirClient(
        server.url, token=server.token(room, identity, role), room=room, on_track=on_track
    )
    return client, counters


async def connect(
    server: InProcessServer, room: str, identity: str, role: Role = Role.PUBLISHER
) -> ParloirClient:
    client = ParloirClient(server.url, token=server.token(room, identity, role), room=room)
    await client.connect()
    return client


async def test_forwarded_tracks_are_never_decoded_on_the_server(
    inprocess_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders: Counter[str] = Counter()
    real_get_decoder = aiortc.rtcrtpreceiver.get_decoder

    def counting_get_decoder(codec):  # type: ignore[no-untyped-def]
        decoders[codec.mimeType] += 1
        return real_get_decoder(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting_get_decoder)
    publisher = await connect(inprocess_server, "nodecode", "pub")
    tapped = [
        tapping_client(inprocess_server, "nodecode", f"sub{i}", Role.SUBSCRIBER) for i in range(2)
    ]
    subscribers = [client for client, _ in tapped]
    for subscriber in subscribers:
        await subscriber.connect()
    try:
        publication = await publisher.publish(
            audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 30)
        )
        counters = []
        for subscriber, counted in tapped:
            for kind in ("audio", "video"):
                await subscriber.wait_for_track(publication["id"], kind)
                counters.append(counted[(publication["id"], kind)])
        await asyncio.sleep(2.0)
        assert all(c.frames > 20 for c in counters), [c.frames for c in counters]
        room = inprocess_server.registry.rooms["nodecode"]
        sources = room.live_publications()[0].sources
        assert sources["video"].stats.frames > 40
        assert sources["video"].consumer_count == 2
        # Neither the SFU nor the (tapped) subscribers ever built a decoder.
        assert decoders == Counter()
    finally:
        await asyncio.gather(*(s.leave() for s in subscribers), publisher.leave())


async def test_subscriber_keyframe_request_reaches_the_publisher_coalesced(
    inprocess_server: InProcessServer,
) -> None:
    publisher = await connect(inprocess_server, "pli", "pub")
    subscriber = await connect(inprocess_server, "pli", "sub", Role.SUBSCRIBER)
    try:
        publication = await publisher.publish(video=PaintedVideoTrack(320, 240, 30))
        received = await subscriber.wait_for_track(publication["id"], "video")
        await asyncio.wait_for(received.track.recv(), 5)
        source = inprocess_server.registry.rooms["pli"].live_publications()[0].sources["video"]
        before = source.keyframe_requests.sent
        sender = next(
            t.sender
            for t in inprocess_server.registry.rooms["pli"]
            .participants[subscriber.participant_id]
            .subscriber.pc.getTransceivers()
            if t.kind == "video"
        )
        # Ten PLIs from the subscriber within 0.1 s become one upstream now and one merged later.
        for _ in range(10):
            sender._send_keyframe()
        await asyncio.sleep(0.8)
        assert source.keyframe_requests.sent - before in (1, 2)
        assert source.stats.keyframes >= 2
    finally:
        await asyncio.gather(subscriber.leave(), publisher.leave())


async def latest_frame(track: Any) -> av.VideoFrame:
    """The newest decoded frame: what the subscriber shows now, not what was queued."""
    frame = await asyncio.wait_for(track.recv(), 5)
    while track.frames_waiting > 0:
        frame = await track.recv()
    return frame


def unclosed_peer_connections() -> int:
    """Peer connections nobody called close() on (a remote close alone does not count)."""
    return sum(
        1
        for obj in gc.get_objects()
        if isinstance(obj, RTCPeerConnection) and not obj._RTCPeerConnection__isClosed
    )


async def test_twenty_join_leave_cycles_leak_no_peer_connection_or_task(
    inprocess_server: InProcessServer,
) -> None:
    rng = random.Random(7)

    async def cycle(n: int) -> None:
        publisher = await connect(inprocess_server, "cycles", f"pub{n}")
        subscriber = await connect(inprocess_server, "cycles", f"sub{n}", Role.SUBSCRIBER)
        publication = await publisher.publish(
            audio=ToneAudioTrack(), video=PaintedVideoTrack(160, 120, 15)
        )
        received = await subscriber.wait_for_track(publication["id"], "video")
        await asyncio.wait_for(received.track.recv(), 5)
        # Half the time the subscriber's socket just drops, its media still up: the server
        # must close its side by itself.
        if rng.random() < 0.5:
            assert subscriber._ws is not None
            await subscriber._ws.close()
            await asyncio.sleep(0.2)
            await subscriber.close()
        else:
            await subscriber.leave()
        await publisher.leave()

    await cycle(0)
    await asyncio.sleep(0.5)
    gc.collect()
    opened_before = PEER_CONNECTIONS.opened
    tasks_before = len(asyncio.all_tasks())
    for n in range(1, 21):
        await cycle(n)
    for _ in range(50):
        if not inprocess_server.registry.rooms:
            break
        await asyncio.sleep(0.1)
    assert inprocess_server.registry.rooms == {}
    await asyncio.sleep(1.0)
    gc.collect()
    assert unclosed_peer_connections() == 0
    assert PEER_CONNECTIONS.opened - opened_before == 20 * 3  # publisher: 2, subscriber: 1
    assert PEER_CONNECTIONS.open == 0
    assert len(asyncio.all_tasks()) <= tasks_before + 2, asyncio.all_tasks()


async def test_dropped_socket_tells_the_others_network_disconnected(
    inprocess_server: InProcessServer,
) -> None:
    a = await connect(inprocess_server, "drop", "a")
    b = await connect(inprocess_server, "drop", "b")
    try:
        b_id = b.participant_id
        await b.close()  # no `leave`: the socket just goes away
        reconnecting = await a.wait_for(lambda m: m["type"] == "participant-reconnecting")
        assert reconnecting["participant_id"] == b_id
        left = await a.wait_for(lambda m: m["type"] == "participant-left")  # grace over
        assert left == {
            "type": "participant-left",
            "participant_id": b_id,
            "reason": "networkDisconnected",
        }
        assert list(inprocess_server.registry.rooms["drop"].participants) == [a.participant_id]
    finally:
        await a.leave()


def test_aiortc_private_hooks_are_present() -> None:
    aiortc_hooks.verify_hooks()


def test_missing_private_hook_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(aiortc.RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(aiortc_hooks.AiortcHooksMissing, match="_send_rtcp_pli"):
        aiortc_hooks.verify_hooks()


async def test_media_connection_closed_under_a_participant_removes_it(
    inprocess_server: InProcessServer,
) -> None:
    a = await connect(inprocess_server, "ice", "a")
    b = await connect(inprocess_server, "ice", "b")
    try:
        for _ in range(100):
            if b.subscriber_pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        b_id = b.participant_id
        await b.subscriber_pc.close()  # media gone, signaling socket still open
        left = await a.wait_for(lambda m: m["type"] == "participant-left")
        assert left["participant_id"] == b_id and left["reason"] == "networkDisconnected"
        closed = await b.wait_for_type("socket-closed")
        assert closed["code"] == 4410
    finally:
        await asyncio.gather(a.leave(), b.close())


async def test_unanswered_subscriber_offer_drops_the_participant(
    inprocess_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signaling.participant, "ANSWER_TIMEOUT_S", 0.5)
    a = await connect(inprocess_server, "mute", "a")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{inprocess_server.url}/rtc") as ws,
    ):
        token = inprocess_server.token("mute", "silent")
        await ws.send_json({"type": "join", "room": "mute", "token": token})
        kinds = []
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            kinds.append(frame.json()["type"])  # never answers the offer
        assert kinds == ["joined", "offer"]
        assert ws.close_code == 4410
    left = await a.wait_for(lambda m: m["type"] == "participant-left")
    assert left["reason"] == "networkDisconnected"
    await a.leave()


async def test_quality_samples_report_bitrate_and_rtt(inprocess_server: InProcessServer) -> None:
    from server.keys import STORE, TELEMETRY

    publisher = await connect(inprocess_server, "quality", "pub")
    viewer = await connect(inprocess_server, "quality", "viewer", Role.SUBSCRIBER)
    try:
        publication = await publisher.publish(video=PaintedVideoTrack(320, 240, 30))
        await asyncio.wait_for(
            (await viewer.wait_for_track(publication["id"], "video")).track.recv(), 5
        )
        telemetry = inprocess_server.app[TELEMETRY]
        store = inprocess_server.app[STORE]
        await telemetry.sample_quality(inprocess_server.registry)
        by_identity: dict[str, Any] = {}
        for _ in range(8):  # RTCP receiver reports (which carry the RTT) come every 0.5-1.5 s
            await asyncio.sleep(1.0)
            await telemetry.sample_quality(inprocess_server.registry)
            await asyncio.sleep(0.1)
            events = await store.events_for_room("quality", ("quality_sample",))
            by_identity = {e.identity: e.data for e in events}
            if by_identity.get("viewer", {}).get("rtt_ms") is not None:
                break
        assert by_identity["pub"]["up_kbps"] > 20, by_identity
        assert by_identity["viewer"]["down_kbps"] > 20, by_identity
        assert by_identity["viewer"]["rtt_ms"] is not None and by_identity["viewer"]["rtt_ms"] < 100
        assert by_identity["pub"]["up_loss"] == 0
    finally:
        await asyncio.gather(publisher.leave(), viewer.leave())


async def test_connection_test_room_loops_a_participants_own_media_back(
    inprocess_server: InProcessServer,
) -> None:
    other = await connect(inprocess_server, "lesson", "other")
    tester = ParloirClient(
        inprocess_server.url,
        token=inprocess_server.token("lesson", "viewer", Role.SUBSCRIBER),
        room="lesson",
    )
    joined = await tester.connect(purpose="connection-test")
    try:
        assert joined["room"]["loopback"] is True and joined["room"]["id"] != "lesson"
        assert joined["participants"] == []  # private: the real room's people are not there
        publication = await tester.publish(video=PaintedVideoTrack(320, 240, 30))
        own = await tester.wait_for_track(publication["id"], "video")
        frame = await asyncio.wait_for(own.track.recv(), 5)
        assert frame.width == 320
        await asyncio.sleep(0.5)
        assert not [m for m in other.events.messages if m["type"] == "track-published"]
        assert "lesson" in inprocess_server.registry.rooms
        assert len(inprocess_server.registry.rooms["lesson"].participants) == 1
    finally:
        await asyncio.gather(tester.leave(), other.leave())


async def test_blur_toggle_over_signaling_blurs_what_subscribers_decode(
    inprocess_server: InProcessServer,
) -> None:
    from bench.blur import background_energy_ratio
    from media.blur_segmentation import blur_installed
    from tests.support.astronaut import AstronautTrack

    if not blur_installed():
        pytest.skip("mediapipe's selfie model is not installed")
    publisher = await connect(inprocess_server, "blurry", "pub")
    viewer = await connect(inprocess_server, "blurry", "viewer", Role.SUBSCRIBER)
    try:
        assert publisher.joined is not None and publisher.joined["blur_available"] is True
        publication = await publisher.publish(video=AstronautTrack())
        video = (await viewer.wait_for_track(publication["id"], "video")).track
        await asyncio.sleep(1.0)
        reference = (await latest_frame(video)).to_ndarray(format="gray")
        reply = await publisher.request(
            {
                "type": "blur",
                "publication_id": publication["id"],
                "enabled": True,
                "strength": "high",
            },
            expect="ack",
            timeout=20,
        )
        assert reply["blur"]["state"] in ("starting", "on")
        status = await publisher.wait_for(
            lambda m: m["type"] == "blur-status" and m["state"] == "on", timeout=20
        )
        assert status["strength"] == "high"
        await asyncio.sleep(1.0)
        ratio = background_energy_ratio(await latest_frame(video), reference)
        assert ratio < 0.2, ratio  # background detail mostly gone
        with pytest.raises(ServerError) as refused:
            await viewer.request(
                {"type": "blur", "publication_id": publication["id"], "enabled": False},
                expect="ack",
            )
        assert refused.value.code == "forbidden"
    finally:
        await asyncio.gather(publisher.leave(), viewer.leave())
