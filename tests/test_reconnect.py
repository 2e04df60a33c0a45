"""A dropped participant keeps its place, ids and chat for the grace period, then comes back."""

from __future__ import annotations

import asyncio

import pytest

from media.synthetic import PaintedVideoTrack, ToneAudioTrack
from signaling import connection
from signaling.client import ParloirClient, ServerError
from signaling.permissions import Role
from tests.conftest import InProcessServer
from tests.support.media_checks import assert_painted_sequence, painted_indices


async def connect(
    server: InProcessServer, room: str, identity: str, role: Role = Role.PUBLISHER
) -> ParloirClient:
    client = ParloirClient(
        server.url, token=server.token(room, identity, role), room=room, name=identity.title()
    )
    await client.connect()
    return client


async def drop(client: ParloirClient) -> None:
    """The network goes away: nothing is said to the server, the socket just dies."""
    await client.close()


async def test_reconnect_within_grace_keeps_ids_and_delivers_chat_sent_meanwhile(
    inprocess_server: InProcessServer,
) -> None:
    inprocess_server.registry.reconnect_grace_s = 10.0
    a = await connect(inprocess_server, "defence", "student")
    b = await connect(inprocess_server, "defence", "jury", Role.MODERATOR)
    back: ParloirClient | None = None
    try:
        publication = await a.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 30))
        old_track = (await b.wait_for_track(publication["id"], "video")).track
        ticket, a_id = a.resume_ticket, a.participant_id
        await drop(a)
        await b.wait_for(lambda m: m["type"] == "participant-reconnecting")
        await b.send_chat("are you there?")  # sent during the gap
        await asyncio.sleep(1.0)
        assert not [m for m in b.events.messages if m["type"] == "participant-left"]
        assert a_id in inprocess_server.registry.rooms["defence"].participants

        back = ParloirClient(
            inprocess_server.url, token=inprocess_server.token("defence", "student"), room="defence"
        )
        joined = await back.connect(resume=ticket)
        assert joined["resumed"] is True and joined["participant"]["id"] == a_id
        assert [p["id"] for p in joined["suspended_publications"]] == [publication["id"]]
        start = len(b.events.messages)
        again = await back.publish(
            audio=ToneAudioTrack(),
            video=PaintedVideoTrack(320, 240, 30),
            publication_id=publication["id"],
        )
        assert again["id"] == publication["id"]
        await b.wait_for(lambda m: m["type"] == "participant-reconnected", start=0)
        republished = await b.wait_for(lambda m: m["type"] == "track-published", start=start)
        assert republished["publication"]["id"] == publication["id"]
        # The new track arrives under the same publication id and replaces the dead one.
        for _ in range(100):
            if b.received[(publication["id"], "video")].track is not old_track:
                break
            await asyncio.sleep(0.05)
        indices = await painted_indices(b.received[(publication["id"], "video")].track, 10)
        assert_painted_sequence(indices)
        history = await back.wait_for_type("chat-history")
        assert "are you there?" in [m["text"] for m in history["messages"]]
        assert not [m for m in b.events.messages if m["type"] == "participant-left"]
    finally:
        await asyncio.gather(b.leave(), *(c.leave() for c in [back] if c))


async def test_a_republished_video_after_a_reconnect_starts_with_its_own_frames(
    inprocess_server: InProcessServer,
) -> None:
    """The subscriber m-line of the dropped video carries the republished one. Frames of the
    dropped video still waiting at the subscriber (unread, and the last one held back by
    aiortc's jitter buffer until the next frame's first packet comes) must not show up as the
    republished video's first frames."""
    inprocess_server.registry.reconnect_grace_s = 10.0
    a = await connect(inprocess_server, "viva", "student")
    b = await connect(inprocess_server, "viva", "jury", Role.MODERATOR)
    back: ParloirClient | None = None
    try:
        publication = await a.publish(video=PaintedVideoTrack(320, 240, 30))
        old = await b.wait_for_track(publication["id"], "video")
        assert_painted_sequence(await painted_indices(old.track, 3))  # it flows; rest unread
        ticket = a.resume_ticket
        await drop(a)
        await b.wait_for(
            lambda m: (
                m["type"] == "offer"
                and publication["id"] not in [s["publication_id"] for s in m["subscriptions"]]
            )
        )
        # Answered (before it was recorded); once the server acks a later message of b's socket,
        # it has applied that answer too, so the republished video takes the freed m-line.
        await b.request(
            {"type": "ice", "pc": "subscriber", "candidate": "", "sdp_mid": "0"}, expect="ack"
        )
        back = ParloirClient(
            inprocess_server.url, token=inprocess_server.token("viva", "student"), room="viva"
        )
        await back.connect(resume=ticket)
        start = len(b.events.messages)
        await back.publish(
            video=PaintedVideoTrack(320, 240, 30, first_index=1000),
            publication_id=publication["id"],
        )
        await b.wait_for(lambda m: m["type"] == "track-published", start=start)
        for _ in range(100):
            if b.received[(publication["id"], "video")] is not old:
                break
            await asyncio.sleep(0.05)
        new = b.received[(publication["id"], "video")]
        assert new.receiver is old.receiver, "expected the dropped video's m-line to be reused"
        indices = await painted_indices(new.track, 10)
        assert_painted_sequence(indices)
        assert all(i is None or i >= 1000 for i in indices), f"dropped video's frames: {indices}"
    finally:
        await asyncio.gather(b.leave(), *(c.leave() for c in [back] if c))


async def test_after_the_grace_period_the_participant_is_gone_and_cannot_resume(
    inprocess_server: InProcessServer,
) -> None:
    inprocess_server.registry.reconnect_grace_s = 0.5
    a = await connect(inprocess_server, "lesson", "student")
    b = await connect(inprocess_server, "lesson", "mentor")
    try:
        ticket = a.resume_ticket
        await drop(a)
        left = await b.wait_for(lambda m: m["type"] == "participant-left", timeout=5)
        assert left["reason"] == "networkDisconnected"
        late = ParloirClient(
            inprocess_server.url, token=inprocess_server.token("lesson", "student"), room="lesson"
        )
        try:
            await late.connect(resume=ticket)
            raise AssertionError("resumed after the grace period")
        except ServerError as refused:
            assert refused.code == "resume-failed"
        finally:
            await late.close()
    finally:
        await b.leave()


async def test_resume_needs_the_key_and_the_same_identity(
    inprocess_server: InProcessServer,
) -> None:
    inprocess_server.registry.reconnect_grace_s = 10.0
    a = await connect(inprocess_server, "guarded", "student")
    b = await connect(inprocess_server, "guarded", "mentor")
    try:
        ticket = a.resume_ticket
        await drop(a)
        await b.wait_for(lambda m: m["type"] == "participant-reconnecting")
        for token_identity, key in (("student", "wrong-key"), ("intruder", ticket["key"])):
            thief = ParloirClient(
                inprocess_server.url,
                token=inprocess_server.token("guarded", token_identity),
                room="guarded",
            )
            try:
                await thief.connect(resume={**ticket, "key": key})
                raise AssertionError("resumed someone else's participant")
            except ServerError as refused:
                assert refused.code == "resume-failed"
            finally:
                await thief.close()
    finally:
        await b.leave()


async def test_resume_over_a_socket_the_server_still_thinks_open_takes_the_participant_back(
    inprocess_server: InProcessServer,
) -> None:
    """The client saw its connection die first (a stalled socket): its resume is accepted, and
    the old socket is closed as dropped."""
    inprocess_server.registry.reconnect_grace_s = 10.0
    a = await connect(inprocess_server, "stalled", "student")
    b = await connect(inprocess_server, "stalled", "mentor")
    back: ParloirClient | None = None
    try:
        publication = await a.publish(audio=ToneAudioTrack(), video=PaintedVideoTrack(320, 240, 30))
        back = ParloirClient(
            inprocess_server.url, token=inprocess_server.token("stalled", "student"), room="stalled"
        )
        joined = await back.connect(resume=a.resume_ticket)
        assert joined["resumed"] is True and joined["participant"]["id"] == a.participant_id
        assert [p["id"] for p in joined["suspended_publications"]] == [publication["id"]]
        closed = await a.wait_for_type("socket-closed")
        assert closed["code"] == 4410
        await b.wait_for(lambda m: m["type"] == "participant-reconnecting")
        await b.wait_for(lambda m: m["type"] == "participant-reconnected")
        assert not [m for m in b.events.messages if m["type"] == "participant-left"]
    finally:
        await asyncio.gather(b.leave(), *(c.leave() for c in [back] if c))
        await a.close()


async def test_a_pinging_client_that_goes_silent_is_reconnecting_for_the_others(
    inprocess_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "KEEPALIVE_TIMEOUT_S", 0.5)
    inprocess_server.registry.reconnect_grace_s = 10.0
    a = await connect(inprocess_server, "silent", "student")
    b = await connect(inprocess_server, "silent", "mentor")
    try:
        # a pings once, then says nothing more while its socket stays open; b never pings, so
        # its silence is fine.
        await a.request({"type": "ping"}, expect="ack")
        gone = await b.wait_for(lambda m: m["type"] == "participant-reconnecting", timeout=5)
        assert gone["participant_id"] == a.participant_id
        closed = await a.wait_for_type("socket-closed", timeout=15)
        assert closed["code"] == 4410
        assert not [m for m in a.events.messages if m["type"] == "participant-reconnecting"]
    finally:
        await b.leave()
        await a.close()


async def test_a_second_drop_gets_a_grace_period_of_its_own(
    inprocess_server: InProcessServer,
) -> None:
    """Back, then dropped again: the first drop's expiry must not cut the second gap short."""
    inprocess_server.registry.reconnect_grace_s = 1.5
    a = await connect(inprocess_server, "flaky", "student")
    b = await connect(inprocess_server, "flaky", "mentor")
    clients = [b]
    try:
        await drop(a)  # first drop: its grace period ends 1.5 s from now
        await asyncio.sleep(0.5)
        back = ParloirClient(
            inprocess_server.url, token=inprocess_server.token("flaky", "student"), room="flaky"
        )
        await back.connect(resume=a.resume_ticket)
        await asyncio.sleep(0.5)
        await drop(back)  # second drop, 1.0 s after the first
        await asyncio.sleep(1.0)  # past the first drop's deadline, inside the second's
        assert not [m for m in b.events.messages if m["type"] == "participant-left"]
        again = ParloirClient(
            inprocess_server.url, token=inprocess_server.token("flaky", "student"), room="flaky"
        )
        clients.append(again)
        joined = await again.connect(resume=back.resume_ticket)
        assert joined["resumed"] is True and joined["participant"]["id"] == a.participant_id
    finally:
        await asyncio.gather(*(c.leave() for c in clients))
